"""docs/contract.md against the code: names, signatures, report shapes, signals, errors, CLI.

The page marks what these tests read: fenced ``python`` blocks whose first line is
``# signatures``, ``# properties``, ``# report: NAME, ...``, ``# errors`` or
``# metrics``, and the signal table. Report shapes are checked against what the
engine really returns, run on the memory backend.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

import dogpile_warm
import dogpile_warm.celery
import dogpile_warm.cli
import dogpile_warm.contrib.prometheus
import dogpile_warm.errors
import dogpile_warm.signals
import dogpile_warm.signatures
import dogpile_warm.testing
from dogpile_warm import CacheWarmingEngine, WarmableFunction, WarmingTask, warmable
from dogpile_warm.cli.parser import build_parser
from dogpile_warm.testing import FakeClock, captured_signals, wait_until

ROOT = Path(__file__).resolve().parent.parent
PAGE_PATH = ROOT / "docs" / "contract.md"
PAGE = PAGE_PATH.read_text(encoding="utf-8")

PUBLIC_MODULES: list[ModuleType] = [
    dogpile_warm,
    dogpile_warm.signals,
    dogpile_warm.signatures,
    dogpile_warm.celery,
    dogpile_warm.testing,
    dogpile_warm.errors,
    dogpile_warm.contrib.prometheus,
    dogpile_warm.cli,
]
# Where an undotted name in a signature block is looked up, in order.
NAMESPACES: list[ModuleType] = [
    dogpile_warm,
    dogpile_warm.testing,
    dogpile_warm.contrib.prometheus,
    dogpile_warm.celery,
]


# -- reading the page ---------------------------------------------------------------
def marked_blocks(marker: str) -> list[tuple[str, str]]:
    """``(rest of the first line, body)`` of every python block whose first line is ``# marker``."""
    found = []
    for block in re.findall(r"^```python\n(.*?)^```", PAGE, flags=re.DOTALL | re.MULTILINE):
        first, _, body = block.partition("\n")
        if first == f"# {marker}" or first.startswith(f"# {marker}:"):
            found.append((first[len(marker) + 3 :].strip(), body))
    return found


def entries(body: str) -> list[str]:
    """The block's lines, comments dropped, a line continued until its parentheses close."""
    done, current = [], ""
    for line in body.splitlines():
        text = line.strip()
        if not current and (not text or text.startswith("#")):
            continue
        current = f"{current} {text}".strip()
        if current.count("(") == current.count(")"):
            done.append(current)
            current = ""
    assert not current, f"unclosed parenthesis in {current!r}"
    return done


def split_call(entry: str) -> tuple[str, str]:
    """``"Name.attr(params) -> ..."`` as ``("Name.attr", "params")``."""
    match = re.match(r"[\w.]+", entry)
    assert match is not None and entry[match.end()] == "(", entry
    depth = 0
    for i in range(match.end(), len(entry)):
        depth += {"(": 1, ")": -1}.get(entry[i], 0)
        if depth == 0:
            return match.group(), entry[match.end() + 1 : i]
    raise AssertionError(f"unbalanced {entry!r}")


def resolve(dotted: str) -> tuple[Any, Any]:
    """The object a documented name names, and its owner (a class, or None)."""
    first, *rest = dotted.split(".")
    for namespace in NAMESPACES:
        if hasattr(namespace, first):
            obj: Any = getattr(namespace, first)
            break
    else:
        raise AssertionError(f"{dotted}: no public {first!r}")
    owner = None
    for attr in rest:
        owner, obj = obj, getattr(obj, attr)
    return obj, owner if inspect.isclass(owner) else None


SIGNATURES = [entry for _, body in marked_blocks("signatures") for entry in entries(body)]


def documented_parameters(text: str) -> list[tuple[str, inspect._ParameterKind, ast.expr | None]]:
    args = ast.parse(f"def _({text}): pass").body[0].args  # type: ignore[attr-defined]
    positional: list[tuple[ast.arg, inspect._ParameterKind]] = [
        (a, inspect.Parameter.POSITIONAL_ONLY) for a in args.posonlyargs
    ]
    positional += [(a, inspect.Parameter.POSITIONAL_OR_KEYWORD) for a in args.args]
    defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    params: list[tuple[str, inspect._ParameterKind, ast.expr | None]] = [
        (a.arg, kind, d) for (a, kind), d in zip(positional, defaults, strict=True)
    ]
    if args.vararg:
        params.append((args.vararg.arg, inspect.Parameter.VAR_POSITIONAL, None))
    params += [
        (a.arg, inspect.Parameter.KEYWORD_ONLY, d)
        for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)
    ]
    if args.kwarg:
        params.append((args.kwarg.arg, inspect.Parameter.VAR_KEYWORD, None))
    return params


def actual_default(obj: Any, param: inspect.Parameter) -> Any:
    """The parameter's default; a dataclass field's ``default_factory()`` for ``<factory>``."""
    if repr(param.default) == "<factory>" and dataclasses.is_dataclass(obj):
        field = next(f for f in dataclasses.fields(obj) if f.name == param.name)
        factory: Callable[[], Any] = field.default_factory  # type: ignore[assignment]
        return factory()
    return param.default


def evaluate(node: ast.expr) -> Any:
    from prometheus_client import Histogram

    return eval(
        compile(ast.Expression(node), "<contract>", "eval"), {"time": time, "Histogram": Histogram}
    )


# -- names ------------------------------------------------------------------------------
@pytest.mark.parametrize("module", PUBLIC_MODULES, ids=lambda m: m.__name__)
def test_every_public_name_is_on_the_page(module: ModuleType) -> None:
    """Each name in a public module's ``__all__`` appears on the page, in backticks."""
    missing = [name for name in module.__all__ if f"`{name}" not in PAGE]
    assert not missing, f"{module.__name__}: not in docs/contract.md: {missing}"


def test_the_page_documents_every_top_level_function_and_class_with_a_signature() -> None:
    """Every callable that ``dogpile_warm`` exports has a signature line, errors aside."""
    documented = {split_call(entry)[0].split(".")[0] for entry in SIGNATURES}
    callables = {
        name
        for name in dogpile_warm.__all__
        if callable(getattr(dogpile_warm, name))
        and not (
            inspect.isclass(getattr(dogpile_warm, name))
            and issubclass(getattr(dogpile_warm, name), BaseException)
        )
    }
    assert callables <= documented, sorted(callables - documented)


# -- signatures ----------------------------------------------------------------------------
@pytest.mark.parametrize("entry", SIGNATURES, ids=lambda e: split_call(e)[0])
def test_a_documented_signature_matches_the_code(entry: str) -> None:
    """Parameter names, kinds and defaults on the page are those of the code, in order."""
    dotted, text = split_call(entry)
    obj, owner = resolve(dotted)
    params = list(inspect.signature(obj).parameters.values())
    if owner is not None and inspect.isfunction(obj):
        params = params[1:]  # self
    documented = documented_parameters(text)
    assert [(p.name, p.kind) for p in params] == [(n, k) for n, k, _ in documented], dotted
    for param, (name, _, default) in zip(params, documented, strict=True):
        if default is None:
            assert param.default is inspect.Parameter.empty, f"{dotted}: {name} has a default"
        else:
            assert evaluate(default) == actual_default(obj, param), f"{dotted}: {name}"


@pytest.mark.parametrize(
    "entry", [e for _, body in marked_blocks("properties") for e in entries(body)]
)
def test_a_documented_property_is_one(entry: str) -> None:
    """A name listed as a property is a property of that class."""
    owner_name, _, attr = entry.rpartition(".")
    owner, _ = resolve(owner_name)
    assert isinstance(inspect.getattr_static(owner, attr), property), entry


# -- report shapes ----------------------------------------------------------------------------
_TYPES: dict[str, type | tuple[type, ...]] = {
    "int": int,
    "float": (int, float),
    "str": str,
    "bool": bool,
    "dict": dict,
    "list": list,
    "object": object,
}


def mismatches(value: Any, node: ast.expr, path: str) -> list[str]:
    """How ``value`` differs from the documented shape ``node`` (empty when it matches)."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        options = [node.left, node.right]
        for option in options:
            if isinstance(option, ast.Dict) and isinstance(value, dict):
                return mismatches(value, option, path)
            if isinstance(option, ast.List) and isinstance(value, list):
                return mismatches(value, option, path)
        if any(not mismatches(value, o, path) for o in options):
            return []
        return [f"{path}: {value!r} is not {ast.unparse(node)}"]
    if isinstance(node, ast.Dict):
        if not isinstance(value, dict):
            return [f"{path}: a dict documented, got {value!r}"]
        keys = [str(k.value) for k in node.keys if isinstance(k, ast.Constant)]
        problems = []
        if set(keys) != set(value):
            problems.append(
                f"{path}: the page has keys {sorted(keys)}, the code {sorted(value)}"
                f" (missing from the page: {sorted(set(value) - set(keys))},"
                f" not returned: {sorted(set(keys) - set(value))})"
            )
        for key, shape in zip(keys, node.values, strict=True):
            if key in value:
                problems += mismatches(value[key], shape, f"{path}[{key!r}]")
        return problems
    if isinstance(node, ast.List):
        (row,) = node.elts
        if not isinstance(value, list):
            return [f"{path}: a list documented, got {value!r}"]
        if not value:
            return [f"{path}: empty, so its rows went unchecked (the test must produce one)"]
        return [p for i, item in enumerate(value) for p in mismatches(item, row, f"{path}[{i}]")]
    if isinstance(node, ast.Subscript):
        assert isinstance(node.value, ast.Name) and node.value.id == "list", ast.unparse(node)
        if not isinstance(value, list):
            return [f"{path}: a list documented, got {value!r}"]
        return [p for i, v in enumerate(value) for p in mismatches(v, node.slice, f"{path}[{i}]")]
    if isinstance(node, ast.Constant) and node.value is None:
        return [] if value is None else [f"{path}: None documented, got {value!r}"]
    assert isinstance(node, ast.Name), f"unsupported shape {ast.unparse(node)}"
    if isinstance(value, bool) and node.id not in ("bool", "object"):
        return [f"{path}: {node.id} documented, got {value!r}"]
    if not isinstance(value, _TYPES[node.id]):
        return [f"{path}: {node.id} documented, got {value!r}"]
    return []


REPORTS: dict[str, ast.expr] = {
    name.strip(): ast.parse(body, mode="eval").body
    for names, body in marked_blocks("report")
    for name in names.split(",")
}

APP_MODULE = """
from dogpile_warm import CacheWarmingEngine, warmable

engine = CacheWarmingEngine(max_workers=2)

@warmable(priority=150, name="catalog", engine=engine)
def catalog():
    return ["espresso"]

@warmable(name="product", engine=engine)
def product(product_id):
    return {"id": product_id}

catalog()
catalog()
product(1)
"""


def cli_json(ctx: SimpleNamespace, *argv: str) -> Any:
    """Run ``dogpile-warm ARGV MODULE:engine`` in this process on a module of its own."""
    module = f"contract_app_{uuid.uuid4().hex}"
    (ctx.tmp_path / f"{module}.py").write_text(APP_MODULE)
    ctx.monkeypatch.chdir(ctx.tmp_path)
    ctx.monkeypatch.syspath_prepend(str(ctx.tmp_path))
    try:
        assert dogpile_warm.cli.main([argv[0], f"{module}:engine", *argv[1:]]) == 0
    finally:
        sys.modules.pop(module, None)
    return json.loads(ctx.capsys.readouterr().out)


def _stats_while_running(ctx: SimpleNamespace) -> dict[str, Any]:
    ctx.engine.start(check_every=3600)
    try:
        return ctx.engine.get_stats()  # type: ignore[no-any-return]
    finally:
        ctx.engine.stop()


def _snapshot_warmed_after_a_task_left(ctx: SimpleNamespace) -> dict[str, Any]:
    ctx.engine.save_hot_set()
    ctx.engine.unregister_task("catalog")  # its saved keys are skipped, with a reason
    return ctx.engine.warm_from_snapshot()  # type: ignore[no-any-return]


# What each documented report is, produced by the code.
PRODUCERS: dict[str, Callable[[SimpleNamespace], Any]] = {
    "warm_critical_data": lambda ctx: ctx.engine.warm_critical_data(),
    "warm_tasks": lambda ctx: ctx.engine.warm_tasks(),
    "warm_hot_keys": lambda ctx: ctx.engine.warm_hot_keys(10),
    "warm_user_data": lambda ctx: ctx.engine.warm_user_data(7),
    "save_hot_set": lambda ctx: ctx.engine.save_hot_set(),
    "warm_from_snapshot": _snapshot_warmed_after_a_task_left,
    "get_stats": _stats_while_running,
    "get_performance": lambda ctx: ctx.engine.get_performance(),
    "optimize_schedules": lambda ctx: ctx.engine.optimize_schedules(),
    "run_scheduled_cycle": lambda ctx: ctx.engine.run_scheduled_cycle(),
    "dogpile-warm stats --json": lambda ctx: cli_json(ctx, "stats", "--json"),
    "dogpile-warm hot-keys --json": lambda ctx: cli_json(ctx, "hot-keys", "--json"),
}


@pytest.fixture
def ctx(
    engine: CacheWarmingEngine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> SimpleNamespace:
    """An application on the test's engine: tasks of every kind, one failing, and some reads."""

    @warmable(priority=150, tags={"catalog"}, name="catalog")
    def catalog() -> list[str]:
        return ["espresso", "latte"]

    @warmable(priority=50, tags={"catalog"}, name="product", warm_args=[(1,), (2,)])
    def product(product_id: int) -> dict[str, int]:
        return {"id": product_id}

    @warmable(priority=60, tags={"forms"}, name="basket", user_arg="user_id")
    def basket(user_id: int) -> list[str]:
        return []

    def prices() -> dict[str, float]:
        raise RuntimeError("price service down")

    engine.register_task(WarmingTask("prices", "prices", "prices", prices, priority=120), True)
    for read in (catalog, catalog, lambda: product(1), lambda: product(1), lambda: product(2)):
        read()
    basket(7)
    engine.warm_critical_data()  # figures for get_performance
    return SimpleNamespace(engine=engine, tmp_path=tmp_path, monkeypatch=monkeypatch, capsys=capsys)


def test_every_documented_report_is_checked() -> None:
    """The page's reports and the reports this test produces are the same set."""
    assert set(REPORTS) == set(PRODUCERS)


@pytest.mark.parametrize("name", sorted(PRODUCERS))
def test_a_report_has_the_documented_keys_and_types(name: str, ctx: SimpleNamespace) -> None:
    """What the code returns has exactly the keys the page lists, with those value types."""
    problems = mismatches(PRODUCERS[name](ctx), REPORTS[name], name)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("function", "report"),
    [
        pytest.param(
            dogpile_warm.warm_critical_data, "warm_critical_data", id="warm_critical_data"
        ),
        pytest.param(
            lambda: dogpile_warm.warm_user_data_optimized(8), "warm_user_data", id="warm_user_data"
        ),
        pytest.param(dogpile_warm.get_warming_stats, "get_stats", id="get_warming_stats"),
        pytest.param(
            dogpile_warm.get_warming_performance, "get_performance", id="get_warming_performance"
        ),
        pytest.param(
            dogpile_warm.optimize_warming_schedules,
            "optimize_schedules",
            id="optimize_warming_schedules",
        ),
    ],
)
def test_a_module_function_returns_the_shape_of_its_method(
    function: Callable[[], Any], report: str, ctx: SimpleNamespace
) -> None:
    """The module-level functions (the default engine) return the documented shapes."""
    value = function()
    if report == "get_stats":
        value["scheduler"] = None  # not started here; its shape is checked above
    problems = mismatches(value, REPORTS[report], report)
    assert not problems, "\n".join(problems)


# -- signals -------------------------------------------------------------------------------------
def documented_signals() -> dict[str, set[str]]:
    """The signal table (of the Signals section): signal name -> keyword arguments."""
    section = PAGE.split("\n## Signals\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \|[^|]*\|([^|]*)\|", section, flags=re.MULTILINE)
    return {name: set(re.findall(r"`(\w+)`", kwargs)) for name, kwargs in rows}


_SENDERS: dict[str, tuple[type, ...]] = {
    "cache_hit": (WarmableFunction,),
    "cache_miss": (WarmableFunction,),
    "refreshed": (WarmableFunction,),
    "served_stale": (WarmableFunction,),
    "warmed": (WarmingTask, CacheWarmingEngine),
    "warm_failed": (WarmingTask, CacheWarmingEngine),
    "invalidated": (CacheWarmingEngine,),
}


def test_the_signal_table_lists_every_signal() -> None:
    """One row per signal of ``dogpile_warm.signals``."""
    assert set(documented_signals()) == set(dogpile_warm.signals.__all__) == set(_SENDERS)


def test_each_signal_is_sent_with_the_documented_keyword_arguments(
    engine: CacheWarmingEngine, clock: FakeClock
) -> None:
    """Every signal, sent for real, carries exactly the keyword arguments of the table."""
    failing = [False]

    @warmable(ttl=10, refresh_ahead=0.5, name="stamp")
    def stamp() -> float:
        return clock()

    @warmable(ttl=10, refresh_ahead=None, stale_if_error=100, name="flaky")
    def flaky() -> int:
        if failing[0]:
            raise RuntimeError("down")
        return 1

    with captured_signals() as sent:
        stamp()  # a miss
        clock.advance(6)  # past refresh_ahead * ttl: a hit, and a background refresh
        stamp()
        wait_until(lambda: sent.named("refreshed"), message="the background refresh")
        flaky()
        clock.advance(20)
        failing[0] = True
        flaky()  # past its ttl, the recompute raises: served stale
        flaky.warm()  # warm_failed
        engine.warm_cache("k", lambda: 1)  # warmed, by the engine
        engine.invalidate_by_tags("catalog")
    documented = documented_signals()
    assert {s.signal for s in sent} == set(documented)
    for send in sent:
        assert set(send.kwargs) == documented[send.signal], send
        assert isinstance(send.sender, _SENDERS[send.signal]), send


# -- errors ------------------------------------------------------------------------------------
def test_the_error_block_is_the_exception_hierarchy() -> None:
    """Each documented class has those bases and ``kind``; every exception is documented."""
    ((_, body),) = marked_blocks("errors")
    classes = [n for n in ast.parse(body).body if isinstance(n, ast.ClassDef)]
    for node in classes:
        cls = getattr(dogpile_warm.errors, node.name)
        assert [b.__name__ for b in cls.__bases__] == [ast.unparse(b) for b in node.bases]
        for item in node.body:
            if isinstance(item, ast.Assign):
                (target,) = item.targets
                assert getattr(cls, ast.unparse(target)) == ast.literal_eval(item.value)
    exceptions = {
        name
        for name in dogpile_warm.errors.__all__
        if inspect.isclass(getattr(dogpile_warm.errors, name))
    }
    assert {n.name for n in classes} == exceptions


# -- prometheus -----------------------------------------------------------------------------------
def test_the_metric_list_is_what_a_registry_exposes(engine: CacheWarmingEngine) -> None:
    """The documented metric names are those PrometheusMetrics registers (default namespace)."""
    from prometheus_client import CollectorRegistry

    ((_, body),) = marked_blocks("metrics")
    documented = {re.split(r"[{\s]", line)[0] for line in entries(body)}
    registry = CollectorRegistry()
    with dogpile_warm.contrib.prometheus.PrometheusMetrics(engine, registry):
        exposed = {
            family.name + ("_total" if family.type == "counter" else "")
            for family in registry.collect()
        }
    assert documented == exposed


# -- the command --------------------------------------------------------------------------------
def _subcommands() -> Iterator[tuple[str, Any]]:
    parser = build_parser()
    for action in parser._actions:
        if action.choices and isinstance(action.choices, dict):
            yield from action.choices.items()


@pytest.mark.parametrize("command", [name for name, _ in _subcommands()])
def test_every_command_and_option_is_on_the_page(command: str) -> None:
    """Each subcommand appears as ``dogpile-warm NAME``, and each of its options in backticks."""
    assert f"`dogpile-warm {command}" in PAGE
    parser = dict(_subcommands())[command]
    options = [opt for action in parser._actions for opt in action.option_strings]
    missing = [opt for opt in options if f"`{opt}" not in PAGE]
    assert not missing, f"{command}: {missing}"


def test_the_top_level_options_are_on_the_page() -> None:
    """``--version`` and ``--help`` of the command itself."""
    for action in build_parser()._actions:
        for opt in action.option_strings:
            assert f"`{opt}" in PAGE, opt


# -- the page stays inside the repository --------------------------------------------------------
@pytest.mark.parametrize("doc", ["README.md", "docs/contract.md"])
def test_links_point_to_files_in_the_repository(doc: str) -> None:
    """Every relative link of the page resolves to a file or folder of the repository."""
    path = ROOT / doc
    text = path.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:|#", target):
            continue
        assert (path.parent / target.split("#")[0]).exists(), f"{doc}: broken link {target}"
    assert "DESIGN" not in text, f"{doc} points at a design file outside the repository"
