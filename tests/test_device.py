"""tcmoa.device's memory policy: large fusions hand freed memory back, small ones keep it; the allocator
setting is the entry points' choice, never a library call's."""
from __future__ import annotations

import ast

import pytest

from tcmoa import device

from .conftest import REPO


class FakeGlibc:
    """Records the allocator calls instead of making them."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def malloc_trim(self, pad: int) -> int:
        self.calls.append(("malloc_trim", pad))
        return 1

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append(("mallopt", param, value))
        return 1


@pytest.fixture
def glibc(monkeypatch: pytest.MonkeyPatch) -> FakeGlibc:
    fake = FakeGlibc()
    monkeypatch.setattr(device, "_GLIBC", fake)
    return fake


def test_only_a_large_image_hands_its_freed_memory_back(glibc: FakeGlibc) -> None:
    device.release_freed_memory(640 * 480)
    device.release_freed_memory(device.RELEASE_FROM_PIXELS - 1)
    assert glibc.calls == []
    device.release_freed_memory(device.RELEASE_FROM_PIXELS)
    device.release_freed_memory(6000 * 4000)
    assert glibc.calls == [("malloc_trim", 0)] * 2


def test_reuse_fixes_the_mmap_threshold_and_raises_the_trim_threshold(glibc: FakeGlibc) -> None:
    device.reuse_freed_memory()
    assert sorted(glibc.calls) == sorted([("mallopt", -3, device.MMAP_THRESHOLD), ("mallopt", -1, device.TRIM_THRESHOLD)])
    # glibc refuses an mmap threshold above 32 MB on 64-bit systems (HEAP_MAX_SIZE / 2)
    assert device.MMAP_THRESHOLD <= 32 * 2**20 < device.TRIM_THRESHOLD


def test_the_allocator_setting_is_made_by_the_entry_points_only() -> None:
    """A library call must not change the process's allocator: only app.py and the CLI's main call it."""
    callers = set()
    for path in [REPO / "app.py", *(REPO / "tcmoa").rglob("*.py"), *(REPO / "demo").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) \
                    == "reuse_freed_memory":
                callers.add(path.relative_to(REPO).as_posix())
    assert callers == {"app.py", "tcmoa/cli.py"}
