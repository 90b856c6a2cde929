"""scripts/hooks/commit-msg: a subject of 72 characters or more is refused, a shorter one passes."""

import subprocess
from pathlib import Path

import pytest

HOOK = Path(__file__).resolve().parents[2] / "scripts" / "hooks" / "commit-msg"


@pytest.mark.parametrize(
    ("subject", "accepted"),
    [("Queue: hand keys to the loss without a copy", True), ("x" * 71, True), ("x" * 72, False)],
)
def test_commit_msg_hook_holds_subjects_under_72_characters(tmp_path, subject, accepted):
    message = tmp_path / "COMMIT_EDITMSG"
    message.write_text(
        f"# a comment line git strips\n{subject}\n\nA body line may be as long as it likes: {'y' * 90}\n"
    )
    done = subprocess.run(["sh", str(HOOK), str(message)], capture_output=True, text=True)
    assert (done.returncode == 0) is accepted
    if not accepted:
        assert "under 72" in done.stderr
