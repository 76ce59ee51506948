import re
from datetime import datetime, timezone

from spectra_cv.audit import AuditLog, audit_line

LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d \| .+$")


def test_audit_line_format_is_runbook_format():
    when = datetime(2026, 3, 15, 19, 42, 3, tzinfo=timezone.utc)
    assert audit_line("Starting fold_02", when) == "2026-03-15T19:42:03 | Starting fold_02\n"
    assert audit_line("two\nlines", when) == "2026-03-15T19:42:03 | two lines\n"


def test_audit_log_appends_whole_lines(tmp_path):
    audit = AuditLog(tmp_path / "logs" / "auditing_manifest.log")
    audit("Launching training run")
    audit("Training completed successfully")
    lines = (tmp_path / "logs" / "auditing_manifest.log").read_text().splitlines()
    assert [l.split(" | ", 1)[1] for l in lines] == ["Launching training run", "Training completed successfully"]
    assert all(LINE.match(l) for l in lines)
