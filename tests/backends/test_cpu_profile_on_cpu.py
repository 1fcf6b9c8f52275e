"""The CPU profile's Ray environment (backends/cpu_profile.py)."""

from __future__ import annotations

from masksearch.backends.cpu_profile import MALLOC_ARENA_MAX, cpu_overrides


def test_a_local_cluster_bounds_the_malloc_arenas_of_its_workers():
    # the rollout server reached ~11 GB RSS with glibc's default arenas, enough for Ray's OOM killer
    # in an 8-step RL run on 23 GiB (issue 22); the workers get the bound through the runtime env
    overrides = cpu_overrides()
    assert f"++ray_kwargs.ray_init.runtime_env.env_vars.MALLOC_ARENA_MAX='{MALLOC_ARENA_MAX}'" in overrides
    assert MALLOC_ARENA_MAX >= 1


def test_an_existing_cluster_keeps_its_own_environment():
    assert not any("MALLOC_ARENA_MAX" in o for o in cpu_overrides(existing_cluster=True))
