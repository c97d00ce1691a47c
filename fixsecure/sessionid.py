"""A FIX session's identity as QuickFIX names it: BeginString, CompIDs, sub/location, qualifier."""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = ["SessionID"]


@dataclass(frozen=True, order=True)
class SessionID:
    """One side's view of a session: ``sender_*`` is us, ``target_*`` the counterparty."""

    begin_string: str
    sender_comp_id: str
    target_comp_id: str
    sender_sub_id: str = ""
    sender_location_id: str = ""
    target_sub_id: str = ""
    target_location_id: str = ""
    qualifier: str = ""

    def __str__(self) -> str:
        def party(comp: str, sub: str, location: str) -> str:
            return "/".join(p for p in (comp, sub, location) if p) if (sub or location) else comp

        sender = party(self.sender_comp_id, self.sender_sub_id, self.sender_location_id)
        target = party(self.target_comp_id, self.target_sub_id, self.target_location_id)
        text = f"{self.begin_string}:{sender}->{target}"
        return f"{text}:{self.qualifier}" if self.qualifier else text

    def reversed(self) -> SessionID:
        """The counterparty's view of the same session."""
        return replace(
            self,
            sender_comp_id=self.target_comp_id,
            target_comp_id=self.sender_comp_id,
            sender_sub_id=self.target_sub_id,
            sender_location_id=self.target_location_id,
            target_sub_id=self.sender_sub_id,
            target_location_id=self.sender_location_id,
        )
