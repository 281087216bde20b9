"""What the stream routes do: create (its target checked, its group made), show with its figures,
list, pause, resume, delete, and add messages to a binding's input."""

from __future__ import annotations

from typing import Any

from inferrer.errors import BrokerUnreachable, InvalidInput
from inferrer.graphs.service import GraphService
from inferrer.jobs.service import iso_time
from inferrer.jobs.targets import resolve_target
from inferrer.state.repository import ModelRepository
from inferrer.streams.broker import answered
from inferrer.streams.records import BindingRecord
from inferrer.streams.registry import BindingRegistry
from inferrer.streams.spec import StreamBinding, field_text
from inferrer.streams.supervisor import StreamSupervisor
from wire import stream_answers as answers


class StreamService:
    def __init__(
        self,
        registry: BindingRegistry | None,
        supervisor: StreamSupervisor | None,
        repository: ModelRepository,
        graphs: GraphService,
    ) -> None:
        self._registry = registry
        self._supervisor = supervisor
        self.repository = repository
        self.graphs = graphs

    @property
    def registry(self) -> BindingRegistry:
        if self._registry is None:
            raise BrokerUnreachable(
                "streams are off: this gateway has no broker (INFERRER_STREAMS_BROKER_URL)"
            )
        return self._registry

    async def create(self, spec: StreamBinding) -> answers.StreamView:
        if spec.converge is None:
            await resolve_target(
                self.repository, self.graphs, spec.model, spec.graph, spec.version, spec.prediction
            )
        record = await self.registry.create(spec)
        self._wake()
        return view(record)

    async def listing(self) -> answers.StreamList:
        return answers.StreamList(streams=[view(r) for r in await self.registry.all()])

    async def detail(self, name: str) -> answers.StreamDetail:
        record = await self.registry.get(name)
        f = await self.registry.figures(record.spec)
        figures = answers.StreamFigures(
            lag=f.lag, pending=f.pending, consumers=f.consumers, dead_letters=f.dead_letters,
            written=f.written, messages_per_second=f.per_second, open_groups=f.open_groups, error=f.error,
        )  # fmt: skip
        return answers.StreamDetail(**view(record).model_dump(), figures=figures)

    async def pause(self, name: str, paused: bool) -> answers.StreamView:
        record = await self.registry.set_paused(name, paused)
        self._wake()
        return view(record)

    async def delete(self, name: str) -> answers.StreamView:
        record = await self.registry.delete(name)
        self._wake()
        return view(record)

    async def produce(self, name: str, messages: list[dict[str, Any]]) -> answers.MessagesAdded:
        """Each message added to the binding's input stream as it is given (its values as text)."""
        record = await self.registry.get(name)
        try:
            texts = [
                {field_text(name): field_text(value) for name, value in fields.items()} for fields in messages
            ]
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        with answered():
            async with self.registry.redis.pipeline(transaction=False) as pipe:
                for fields in texts:
                    pipe.xadd(record.spec.input, fields)  # type: ignore[arg-type]
                ids = await pipe.execute()
        return answers.MessagesAdded(stream=record.spec.input, ids=ids)

    def _wake(self) -> None:
        if self._supervisor is not None:
            self._supervisor.wake()


def view(record: BindingRecord) -> answers.StreamView:
    spec = record.spec
    converge = None if spec.converge is None else answers.ConvergeView(**spec.converge.model_dump())
    return answers.StreamView(
        name=spec.name, input=spec.input, output=spec.output, dead_letter=spec.dead_letter_stream,
        model=spec.model, graph=spec.graph, converge=converge, version=spec.version,
        prediction=spec.prediction, group=spec.group_name, start=spec.start, batch=spec.batch,
        features=spec.features, instances_field=spec.instances_field, key=spec.key,
        max_deliveries=spec.max_deliveries, paused=record.paused, created=iso_time(record.created),
    )  # fmt: skip
