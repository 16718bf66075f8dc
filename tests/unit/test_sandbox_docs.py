"""docs/security.md states what the code does: allow-listed calls, error types, module rules."""

from __future__ import annotations

from pathlib import Path

from strategyq.sandbox import policy, result, syscalls

DOC = (Path(__file__).parents[2] / "docs" / "security.md").read_text()
README = (Path(__file__).parents[2] / "README.md").read_text()


def test_every_allowed_call_is_documented() -> None:
    for name in [*syscalls.ALLOWED, *syscalls.FILTERED, *syscalls.ENOSYS]:
        assert f"`{name}`" in DOC, name


def test_every_reason_in_the_table_is_the_documented_one() -> None:
    for name, reason in syscalls.ALLOWED.items():
        assert f"| `{name}` | {reason} |" in DOC, name


def test_every_error_type_is_documented() -> None:
    for kind in result.ERROR_TYPES:
        assert f"`{kind}`" in DOC, kind
        assert f"`{kind}`" in README, kind


def test_module_rules_are_documented() -> None:
    for name in ("sys", "os", "builtins", "inspect", "ctypes", "gc", "importlib"):
        assert name in policy.MODULE_ATTRIBUTES
        assert f"`{name}`" in DOC, name
    for name in ("collections", "functools", "operator", "zoneinfo", "logging", "warnings"):
        assert name in policy.STDLIB_MODULES
        assert f"`{name}`" in DOC, name
    for library in policy.LIBRARIES:
        assert f"`{library}`" in DOC, library


def test_the_readme_contract_shows_a_class_and_a_talib_strategy_that_pass_the_check() -> None:
    from strategyq import check_strategy

    section = README.split("## The strategy contract", 1)[1].split("\n## ", 1)[0]
    snippets = [block.split("```", 1)[0] for block in section.split("```python\n")[1:]]
    assert any("class " in s for s in snippets) and any("import talib" in s for s in snippets)
    for code in snippets:
        assert check_strategy(code).ok, check_strategy(code).message


def test_kernel_matrix_covers_every_abi() -> None:
    for abi, kernel in enumerate(("5.13", "5.19", "6.2", "6.7", "6.10", "6.12", "6.15"), start=1):
        assert f"| {kernel} | {abi} |" in DOC, abi
