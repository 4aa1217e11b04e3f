"""bench/stt_host_overhead.py runs on the tiny model and writes its table (times are not judged)."""

from __future__ import annotations

import pytest

from tests.bench.test_benchmarks_run import ROOT, run_bench

pytestmark = pytest.mark.moshi


def _rows(table: str) -> dict[tuple[int, str], list[str]]:
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0].isdigit():
            rows[(int(cells[0]), cells[1])] = cells[2:]
    return rows


def test_host_overhead_table_has_every_configuration_and_sane_fields(tmp_path):
    out = tmp_path / "overhead.md"
    args = ["--batch", "8", "--steps", "4", "--warmup", "1", "--out", str(out)]
    # --before with this same checkout exercises the comparison columns.
    result = run_bench("bench/stt_host_overhead.py", *args, "--before", str(ROOT))
    rows = _rows(result.stdout)
    assert set(rows) == {(8, "silero"), (8, "heads")}
    for (batch, pauses), cells in rows.items():
        median, p99, ratio, per_slot = (float(c) for c in cells[:4])
        assert 0 < median <= p99
        # The ratio comes from unrounded times, the two medians are printed to 0.01 ms.
        assert (p99 - 0.005) / (median + 0.005) - 0.01 <= ratio <= (p99 + 0.005) / (median - 0.005) + 0.01
        # Both are printed rounded: the median to 0.01 ms, µs per slot to 0.1.
        assert per_slot == pytest.approx(1000 * median / batch, abs=1000 * 0.005 / batch + 0.05)
        # A difference of two medians: a number for the VAD on tensor ops, whatever its sign.
        assert isinstance(float(cells[4]), float) if pauses == "silero" else cells[4] == "—"
        before_median, before_p99, _ = (float(c) for c in cells[5:8])
        assert 0 < before_median <= before_p99
    assert "Issuing the VAD's tensor ops (timed at batch 1):" in result.stdout
    written = out.read_text()
    assert "| batch | pauses | host ms median |" in written
    assert "Command: `python bench/stt_host_overhead.py --batch 8 --steps 4" in written
