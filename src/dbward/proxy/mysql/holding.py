"""A MySQL statement held for approval: the command, where the client's packets resume,
and what stands for it when the approvers answer (or do not)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from dbward.codec.mysql.framing import Frame
from dbward.identity.models import Identity
from dbward.policy.decide import Decision
from dbward.proxy.holding import HeldStatement, decide_held, refused
from dbward.proxy.mysql.commands import Hold

if TYPE_CHECKING:
    from dbward.proxy.mysql.session import MysqlSession


@dataclass(frozen=True, slots=True)
class HeldCommand:
    block: bytes  # the client's packets, to resume after the held one
    frames: list[Frame]
    index: int  # the frame after the held command
    raw: bytes  # the held command's packets, sent upstream unchanged once approved
    verdict: Hold

    @property
    def decision(self) -> Decision:
        decision = self.verdict.pending.decision
        assert decision is not None
        return decision

    async def decide(self, session: MysqlSession, identity: Identity, wait: float) -> Decision:
        pending = self.verdict.pending
        service, watcher = session.ctx.approvals, session.ctx.watcher
        assert service is not None
        assert watcher is not None
        statement = HeldStatement(
            pending.text,
            session.audit_text(pending),
            self.verdict.parameters,
            self.verdict.shown,
            pending.analysis,
            self.decision,
        )
        return await decide_held(
            service,
            watcher,
            statement,
            identity=identity,
            subject=session.subject,
            session=session.id,
            wait=wait,
            tell_client=None,  # MySQL has no message a server may send unasked
        )

    def cancelled(self) -> Decision:
        return replace(
            refused(
                self.decision,
                None,
                "Query execution was interrupted: it was waiting for approval and did not run",
                "an approval given later lets the identical statement run at once",
            ),
            sqlstate="57014",
        )

    def unavailable(self, exc: Exception) -> Decision:
        return refused(
            self.decision,
            None,
            f"dbward cannot ask for approval now ({type(exc).__name__}); the statement did not run",
            "try again in a moment",
        )
