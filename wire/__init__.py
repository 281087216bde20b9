"""What crosses the wire between clients and services: fast JSON bodies and the error shape."""
