"""The public names of each package are pinned, and no package reaches into another's private modules."""

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {
    "pipelines": "lc_async_pipelines",
    "prompts": "lc_async_pipelines.prompts",
    "callbacks": "lc_async_pipelines.callbacks",
}

PUBLIC = {
    "lc_async_pipelines": [
        "BudgetUnavailable", "CacheUnavailable", "FetchError", "WorkersLost",
        "ConfigurationError", "DeadlineExceeded", "EmbeddedModelError", "InputError", "Item",
        "ModelSession", "ModelSettings", "OutputValidationError", "OutputWriteError",
        "PipelineSpec", "PipelinesError", "RateBudget", "Record", "RetryPolicy", "RowError", "RunOptions", "RunSummary",
        "SQLiteCache", "__version__", "build_auto_summary_chain", "build_map_reduce_summary_chain",
        "build_prompt_chain", "build_story_chain", "build_summary_chain", "chat_model_session",
        "load_pipeline", "load_prompt_file", "load_schema", "make_chat_model", "model_session",
        "prepare_resume", "read_items", "registered_pipelines", "run_items", "split_into_chunks",
        "structured_output", "with_budget", "write_records",
    ],
    "lc_async_pipelines.callbacks": [
        "CallMetrics", "ITEM_KEY", "MetricsCallbackHandler", "QueueCallbackHandler", "StreamEvent",
        "TaggedCallbackHandler", "TerminalStreamHandler", "Token", "asks_for_tokens", "item_of",
        "token_text", "usage_of",
    ],
    "lc_async_pipelines.prompts": [
        "COMBINE_PROMPT", "MAP_PROMPT", "NEWS_AGENT_PROMPT", "NEWS_ANALYSIS_PROMPT", "NEWS_SHORT_SUMMARY", "NEWS_TONE_PROMPT",
        "NEWS_TONE_WORD_PROMPT", "OUTLINE_PROMPT", "STORY_FROM_OUTLINE_PROMPT", "STORY_PROMPT", "SUMMARY_PROMPT",
    ],
    "lc_async_pipelines.runner": [
        "BatchOptions", "BatchSession", "BudgetRateLimiter", "BudgetedChatModel", "CostMeter",
        "FlexOptions", "Item", "ItemReader", "PriceTable", "RateBudget", "Record", "batches_path", "estimate_run",
        "load_prices", "RedisCache", "RedisRateBudget", "RetryPolicy", "RunOptions", "RunSummary",
        "SQLiteCache", "budget_key", "count_items", "is_transient", "item_id_for", "open_budget",
        "open_cache", "prepare_resume", "read_items", "retry_after", "run_items", "with_budget",
        "with_cache", "write_records",
    ],
    "lc_async_pipelines.runner.batch": [
        "BATCH_STATE_FORMAT", "BatchLimits", "BatchOptions", "BatchProvider", "BatchRequest",
        "BatchSession", "BatchStats", "BatchStatus", "LineResult", "batches_in_flight", "batches_path", "provider_for",
    ],
    "lc_async_pipelines.runner.caches": ["RedisCache", "SQLiteCache", "open_cache", "with_cache"],
    "lc_async_pipelines.runner.costs": [
        "CostMeter", "DryRunModel", "ItemCosts", "ModelPrice", "PRICES_FORMAT", "PriceTable",
        "RunEstimate", "TIERS", "chain_max_tokens", "estimate_message_tokens", "estimate_run",
        "load_prices", "tier_of", "usage_cost",
    ],
    "lc_async_pipelines.runner.inputs": [
        "CSV_SNIFF_BYTES", "DEFAULT_FIELDS", "DEFAULT_MAX_ROW_BYTES", "FORMATS", "MAX_JSON_BYTES",
        "Item", "ItemReader", "count_items", "item_id_for", "read_items",
    ],
    "lc_async_pipelines.runner.lanes": [
        "BatchControl", "BatchLane", "Lane", "LaneEvent", "LaneKind", "LaneOptions", "LanePlan",
        "LaneReport", "LaneRun", "LaneState", "Move", "RequestLane", "SharedCap", "cancel_margin",
        "plan_lanes", "rank_lanes", "tick_for",
    ],
    "lc_async_pipelines.runner.limits": [
        "BudgetRateLimiter", "BudgetRates", "BudgetStore", "BudgetedChatModel",
        "FlexOptions", "MemoryBudgetStore", "RateBudget", "RedisBudgetStore", "RedisRateBudget",
        "SharedUse", "budget_key", "flex_call", "open_budget", "with_budget",
    ],
    "lc_async_pipelines.runner.records": [
        "MANIFEST_FORMAT", "PARQUET_HINT", "PriorTotals", "RunFile", "RunManifest", "RunTotals",
        "TABLE_FORMATS", "TableInfo", "batches_path", "chain_fingerprint", "check_table_format",
        "done_ids", "lanes_path", "lock_holder", "lock_path", "manifest_path", "open_run",
        "prepare_resume",
        "records_path", "run_totals", "summary_path", "whole_run_summary", "write_atomic",
        "write_table",
    ],
    "lc_async_pipelines.engines": ["ChainRecipe", "run_items_on_ray"],
    "lc_async_pipelines.errors": [
        "BudgetUnavailable", "CacheUnavailable", "ConfigurationError", "DeadlineExceeded", "EmbeddedModelError",
        "FetchError", "InputError", "OutputValidationError", "OutputWriteError", "PipelinesError", "RowError",
        "WorkersLost",
    ],
    "lc_async_pipelines.news": [
        "Article", "Extractor", "FeedEntry", "FetchLimits", "Fetched", "Fetcher", "NewsAnalysis",
        "NewsReport",
        "PageText", "analyse_news", "build_news_agent", "build_news_analysis_chain",
        "build_news_tool_chain", "canonical_url", "extract_page", "iter_articles", "news_tools",
        "page_metadata", "parse_feed", "read_sources",
    ],
    "lc_async_pipelines.telemetry": [
        "configure_telemetry",
        "current",
        "enable_from_environment",
        "shutdown_telemetry",
    ],
    "lc_async_pipelines.service": [
        "BatchRequest", "InvokeRequest", "InvokeResponse", "ServiceSettings", "bind",
        "create_app", "secured_app", "serve",
    ],
    "lc_async_pipelines.view": ["RunWatch", "create_view_app"],
}  # fmt: skip


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_all_is_pinned_and_importable(package):
    module = importlib.import_module(package)
    assert sorted(module.__all__) == sorted(PUBLIC[package])
    for name in module.__all__:
        assert getattr(module, name) is not None


def test_every_hierarchy_error_derives_from_the_base():
    from lc_async_pipelines import errors

    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.PipelinesError)


def _modules():
    for folder, package in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([package, *parts])
            is_package = path.name == "__init__.py"
            yield path, name if is_package else name.rsplit(".", 1)[0]


def test_no_private_module_is_imported_from_outside_its_package():
    offences = []
    for path, home in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                parts = name.split(".")
                if parts[0] != "lc_async_pipelines":
                    continue
                for i, part in enumerate(parts):
                    if part.startswith("_") and not part.startswith("__"):
                        owner = ".".join(parts[:i])
                        if home != owner and not home.startswith(owner + "."):
                            offences.append(f"{path.relative_to(ROOT)} imports {name}")
                        break
    assert offences == []


def test_importing_the_runner_loads_no_client_library():
    """The runner's facade is lazy: Record alone loads neither OpenAI, Redis, Ray nor OpenTelemetry."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from lc_async_pipelines.runner import Record\n"
        "import lc_async_pipelines.engines\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('openai', 'redis', 'ray', 'opentelemetry'))\n"
        "print(heavy)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_the_root_exports_every_error_of_the_tree():
    import lc_async_pipelines
    from lc_async_pipelines import errors

    assert set(errors.__all__) <= set(lc_async_pipelines.__all__)
    for name in errors.__all__:
        assert getattr(lc_async_pipelines, name) is getattr(errors, name)
        assert name in (errors.__doc__ or "")  # drawn in the tree, with its exit code
