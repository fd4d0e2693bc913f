"""Emulator helpers: a clear install hint when it is missing; reuse of a running one; idempotent set-up."""

from __future__ import annotations

import pytest

from cdp_assets.events import emulator

pytestmark = pytest.mark.emulator


def test_missing_gcloud_names_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(emulator.EmulatorError) as err:
        emulator.start(port=emulator.free_port(), log_dir=tmp_path)
    assert "pubsub-emulator" in str(err.value) and "google-cloud-cli-pubsub-emulator" in str(err.value)
    assert "Java 11" in str(err.value)


def test_ensure_reuses_a_recorded_emulator_that_still_serves(tmp_path, pubsub_emulator):
    state = tmp_path / "state"
    state.mkdir()
    (state / "pubsub-emulator.json").write_text(
        '{"host": "%s", "port": %d, "project": "%s", "pid": null, "log_path": null}'
        % (pubsub_emulator.host, pubsub_emulator.port, pubsub_emulator.project))
    found = emulator.ensure(state, project=pubsub_emulator.project)
    assert found.address == pubsub_emulator.address and found.pid is None  # reused, not started
    assert emulator.is_ready(found.address)


def test_topic_and_subscription_creation_is_idempotent(pubsub_emulator):
    args = (pubsub_emulator.address, pubsub_emulator.project, "idem-topic", "idem-sub")
    assert emulator.ensure_topic_and_subscription(*args) == emulator.ensure_topic_and_subscription(*args)
