"""``pathgen eval``'s instruct figures: type mix, yes/no balance, verification failures."""

from __future__ import annotations

from pathgen.eval.instruct_metrics import instruct_summary
from pathgen.eval.records import InstructItemRecord


def _item(i: int, kind: str, status: str = "passed", yes_no: tuple[str, ...] = (), **kw):
    return InstructItemRecord(i, i % 3, kind, status, kw.get("reason"), yes_no, kw.get("turns", 1))


def test_mix_balance_and_failures() -> None:
    items = [
        _item(1, "open"),
        _item(2, "yesno", yes_no=("yes",)),
        _item(3, "yesno", yes_no=("no",)),
        _item(4, "yesno", "failed", ("yes",), reason="answer 'yes' but the description does not mention 'x'"),  # noqa: E501
        _item(5, "yesno", "failed", ("no",), reason="turn 2: answer 'no' but the description mentions 'y'"),  # noqa: E501
        _item(6, "conversation", turns=3),
        _item(7, "open", "failed", reason="judge: unsupported"),
    ]  # fmt: skip
    s = instruct_summary(items)
    assert s["items"] == 7 and s["tiles"] == 3
    assert s["by_kind"]["yesno"] == {"items": 4, "share": 0.5714, "passed": 2, "failed": 2}
    assert s["by_kind"]["label"]["items"] == 0
    assert s["yes_no"] == {"passed": 2, "yes_share": 0.5, "all": 4, "yes_share_all": 0.5}
    assert s["failed"] == 3 and s["conversation_turns_mean"] == 3
    reasons = {f["reason"]: f["items"] for f in s["failures"]}
    assert reasons == {
        "answer '…' but the description does not mention '…'": 1,
        "answer '…' but the description mentions '…'": 1,
        "judge: unsupported": 1,
    }
    assert instruct_summary([])["yes_no"]["yes_share"] is None
