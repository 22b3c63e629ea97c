"""/routing: a project's model as coordinators see it (its record, one-check routing on or
off and why), and routing switched on or off by hand — after the model switched it off, say,
and was retrained or fixed."""

from __future__ import annotations

from ..service.types import ModelState
from . import render
from .catalog import Texts
from .context import Context, Handler
from .events import Who

SWITCHES = {"on": True, "off": False}


class RoutingCommand:
    """What /routing [PROJECT] [on|off] says and does."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.service = ctx.service

    def handlers(self) -> dict[str, Handler]:
        """The commands this part answers, by name."""
        return {"routing": self.routing}

    async def routing(self, who: Who, args: str, t: Texts) -> None:
        """/routing [PROJECT]: the model's state; /routing [PROJECT] on|off: switch routing."""
        command = self.ctx.how.command("routing")
        words = args.split()
        switch = SWITCHES.get(words[-1].lower()) if words else None
        if switch is not None:
            words = words[:-1]
        names = self.service.model_projects()
        if not names:
            await self.ctx.tell(who, t("model.none"))
            return
        if len(words) > 1 or (words and words[0] not in names) or (not words and len(names) > 1):
            await self.ctx.tell(who, t("model.which", command=command, projects=t.join(names)))
            return
        name = words[0] if words else names[0]
        title = self.service.info(name).title_in(t.lang)
        if switch is not None:
            await self.service.set_routing(name, switch, who.user)
        state = await self.service.model_state(name)
        assert state is not None  # one of the model projects
        if switch is None:
            await self.ctx.tell(who, state_text(t, state, title, command))
        elif switch:
            text = t("model.now_on", title=title)
            if state.below_bar:
                text += "\n" + t("model.still_below", command=command)
            await self.ctx.tell(who, text)
        else:
            await self.ctx.tell(who, t("model.now_off", title=title, command=command))


def state_text(t: Texts, m: ModelState, title: str, command: str) -> str:
    """The model's state: routing on or off (and why), what it suggested, its record."""
    if m.routing:
        lines = [t("model.on", title=title, threshold=t.percent(m.threshold))]
    elif m.reason is not None:
        lines = [t("model.off_because", title=title, why=render.why_text(t, m.reason))]
    else:
        lines = [t("model.off", title=title)]
    lines.append(
        t(
            "model.suggested",
            version=m.version or m.kind,
            suggested=m.suggested,
            verified=m.verified,
            rejected=m.rejected,
        )
    )
    lines.append(render.model_record_text(t, m.right, m.scored))
    lines.append(t("model.switch_off" if m.routing else "model.switch_on", command=command))
    return "\n".join(lines)
