"""compile_cache: which folder JAX's persistent compilation cache uses, and when none.

That a resumed run loads its programs from the cache is checked with real
processes in test_checkpoint.py (the SIGTERM-and-resume test).
"""

from __future__ import annotations

import jax

from jaxrl import compile_cache


def test_the_users_jax_compilation_cache_dir_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", jax.config.jax_compilation_cache_dir)
    assert compile_cache.enable(str(tmp_path / "mine")) == jax.config.jax_compilation_cache_dir
    assert not (tmp_path / "mine").exists()


def test_null_or_empty_sets_no_cache_and_reports_the_one_jax_has(monkeypatch, tmp_path):
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", "")
    monkeypatch.chdir(tmp_path)
    # the suite's own cache, set by conftest through jax.config
    assert compile_cache.enable(None) == jax.config.jax_compilation_cache_dir
    suite_cache = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", None)
    try:
        assert compile_cache.enable(None) is None
        # `compile_cache=''` as `run_dir=''`: unset, not the working directory, which would fill with programs
        assert compile_cache.enable("") is None and jax.config.jax_compilation_cache_dir is None
    finally:
        jax.config.update("jax_compilation_cache_dir", suite_cache)


def test_a_folder_that_cannot_be_written_warns_and_the_run_goes_on_without(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", "")
    (tmp_path / "a_file").write_text("")
    before = jax.config.jax_compilation_cache_dir
    assert compile_cache.enable(str(tmp_path / "a_file" / "cache")) is None
    assert jax.config.jax_compilation_cache_dir == before
    err = capsys.readouterr().err
    assert f"compile_cache={tmp_path / 'a_file' / 'cache'} cannot be written" in err and "without a cache" in err
