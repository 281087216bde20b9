"""inferrer: the gateway. The only public entry; owns the model repository."""
