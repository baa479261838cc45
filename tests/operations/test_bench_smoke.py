"""The benchmark code keeps working (CONVENTIONS 12): a tiny run of every scenario, and its
bad-input exits. Asserts only that it ran and produced numbers, never a speed."""

import json
import math
import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT, free_port


def run_bench(*args, env=None, timeout=120):
    environment = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def assert_clean_failure(result, code, message):
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.slow
def test_quick_run_of_every_scenario_produces_numbers(tmp_path):
    # Its own embedded PostgreSQL (under the worktree, where the unprivileged server user can
    # reach it when tests run as root), so it never meets `make bench`'s or the tests' server.
    env = {"BENCH_DB_DIR": str(ROOT / ".data" / "bench-smoke-postgres"), "BENCH_DB_PORT": str(free_port())}
    result = run_bench("--quick", "--output", str(tmp_path), env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "pipeline / raw" in result.stdout  # the table, with the ratio

    report = json.loads((tmp_path / "latest.json").read_text())
    assert (tmp_path / "latest.md").read_text().startswith("# Sidecar benchmark")
    assert report["environment"]["cores"] >= 1 and report["environment"]["pgvector"]
    scenarios = report["scenarios"]
    assert set(scenarios) == {
        "pipeline", "machinery", "http", "latency", "backfill", "search", "memory", "dashboard", "sources",
        "files", "quality", "index",
    }  # fmt: skip
    expected = {
        "pipeline": [
            "raw_docs_per_s",
            "pipeline_docs_per_s",
            "ratio",
            "qcluster_docs_per_s",
            "qcluster_ratio",
            "pipeline_batch_32_docs_per_s",
        ],
        "machinery": [
            "workers_batch32_1p_docs_per_s",
            "workers_batch32_2p_docs_per_s",
            "workers_batch32_4p_docs_per_s",
            "workers_batch512_2p_docs_per_s",
            "workers_batch512_2p_no_hnsw_docs_per_s",
            "workers_batch512_2p_postgres_cpu_ms_per_doc",
            "profile_total_s",
        ],
        "http": [
            "c1_docs_per_s",
            "c4_docs_per_s",
            "c16_docs_per_s",
            "c16_machine_busy_cores",
            "c16_workers_cores",
            "profile_ms_per_batch",
        ],
        "latency": ["p50_s", "p95_s"],
        "quality": ["hybrid_ndcg_10", "vector_ndcg_10", "keyword_ndcg_10", "keyword_identifier_share"],
        "index": ["maintained_s", "policy_drain_s", "policy_build_s", "maintained_vs_policy"],
        "backfill": [
            "dry_run_s",
            "enqueue_s",
            "enqueue_peak_rss_mib",
            "copy_without_trigger_s",
            "copy_with_trigger_s",
            "trigger_cost_ratio",
        ],
        "search": [
            "index_build_s",
            "exact_p50_ms",
            "raw_p50_ms",
            "raw_p95_ms",
            "raw_recall_default",
            "search_p95_ms",
            "search_recall",
            "hybrid_p95_ms",
            "hybrid_vs_vector_p95_ratio",
            "hybrid_filter_1pct_p95_ms",
            "filter_1pct_full_share",
            "keyword_broad_p95_ms",
            "terms_write_cost_ratio",
        ],
        "memory": ["rss_start_mib", "rss_middle_mib", "rss_end_mib", "growth"],
        "dashboard": [
            "snapshot_s",
            "service_p50_ms",
            "service_p95_ms",
            "page_p50_ms",
            "page_p95_ms",
            "list_queue_items_p95_ms",
            "list_dead_letters_p95_ms",
            "list_documents_p95_ms",
        ],
        "sources": [
            "copy_without_s",
            "copy_with_s",
            "copy_ratio",
            "update_body_ratio",
            "update_views_without_us",
            "update_views_with_us",
            "update_views_ratio",
            "bulk_body_ratio",
            "bulk_body_fresh_ratio",
            "bulk_views_ratio",
            "mirror_s",
            "mirror_copy_s",
            "mirror_python_peak_mib",
            "mirror_backend_peak_mib",
        ],
        "files": [
            "pdf_files_per_s",
            "pdf_mb_per_s",
            "html_files_per_s",
            "markdown_files_per_s",
            "docx_files_per_s",
            "big_pdf_peak_mib",
            "first_sync_s",
            "resync_unchanged_s",
            "bucket_first_sync_s",
            "bucket_resync_unchanged_s",
            "upload_peak_mib",
        ],
    }
    # Elsewhere a note means something went wrong (documents not embedded, a wrong count).
    informational = {"machinery", "http", "search"}
    for name, keys in expected.items():
        metrics = scenarios[name]["metrics"]
        for key in keys:
            assert isinstance(metrics[key], int | float) and math.isfinite(metrics[key]), (name, key)
        assert not scenarios[name]["notes"] or name in informational, scenarios[name]["notes"]
    for name in ("http", "machinery"):
        assert not [note for note in scenarios[name]["notes"] if "embedded of" in note], name
    assert len(scenarios["machinery"]["metrics"]["profile_top10_tottime"]) == 10
    assert scenarios["dashboard"]["metrics"]["documents_counted"] == "live"  # a tiny table
    # The three targets of the sources scenario are judged (met or not, never left blank).
    judged = {row["measure"]: row["met"] for row in scenarios["sources"]["rows"] if row["target"]}
    assert len(judged) >= 3 and all(isinstance(met, bool) for met in judged.values()), judged


def test_unknown_scenario_exits_2_with_a_message():
    assert_clean_failure(run_bench("no-such-scenario"), 2, "unknown scenario 'no-such-scenario'")


@pytest.mark.parametrize("size", ["0", "-5"])
def test_size_below_one_exits_2_with_a_message(size):
    assert_clean_failure(run_bench("machinery", "--size", size), 2, "--size must be at least 1")


def test_cuda_device_without_onnxruntimes_cuda_provider_exits_2_with_a_message():
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider: --device cuda is valid here")
    result = run_bench("pipeline", "--device", "cuda")
    assert_clean_failure(result, 2, "--device cuda needs onnxruntime's CUDAExecutionProvider")
    assert "install onnxruntime-gpu" in result.stderr


def test_unreachable_database_exits_1_with_a_message():
    url = f"postgres://postgres@127.0.0.1:{free_port()}/sidecar_bench"
    assert_clean_failure(run_bench("latency", "--quick", "--database-url", url), 1, "cannot reach")


def test_database_url_that_is_not_a_bench_database_is_refused():
    result = run_bench("--database-url", "postgres://postgres@127.0.0.1:5432/production")
    assert_clean_failure(result, 2, "must name a database whose name contains 'bench'")


def test_the_peer_comparison_runs_only_when_named():
    # Its first run installs pgai with network access, which `make bench` must not need.
    from bench.__main__ import parse_arguments

    assert "peer" not in parse_arguments([]).scenarios
    assert parse_arguments(["peer", "--quick"]).scenarios == ["peer"]


def test_the_peer_comparisons_bare_client_embeds_every_text_against_the_bench_server():
    # The bound both sides are measured against: the real bench server, no database.
    from bench import corpus, peer

    documents = corpus.documents_for("synthetic", 23, 20)
    rate = peer.run_bare_client(peer.Setting(batch=5, in_flight=2), documents)
    assert math.isfinite(rate) and rate > 0


@pytest.mark.parametrize(("pgai", "out_of_reach"), [(633.0, True), (600.0, False)])
def test_the_peer_comparison_says_when_its_target_is_beyond_the_bare_client(pgai, out_of_reach):
    from bench import common, peer

    result = common.ScenarioResult("peer", "corpus", {})
    batch50 = peer.CONFIGURATIONS[0]
    peer.report_bound(result, batch50, {"pgai": pgai, "sidecar": 829.0}, [941.0, 939.0, 950.0])
    assert result.metrics["batch50_bare_client_docs_per_s"] == 941.0  # the median of the rounds
    assert result.metrics["batch50_bound_over_pgai"] == pytest.approx(941.0 / pgai)
    assert result.metrics["batch50_sidecar_share_of_bound"] == pytest.approx(829.0 / 941.0)
    assert any("out of reach here" in note for note in result.notes) is out_of_reach
