"""``reactor rules check`` and ``reactor rules test`` on the shipped rules and samples; exit codes."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from reactor.events.decode import Decoder
from reactor.rules.cli import EXIT_ERROR, EXIT_MISMATCH, EXIT_OK, check_command, dry_run_command
from tests.conftest import REPO
from tests.rules.helpers import registry

SAMPLES = Path(__file__).parent / "samples"
RULES = REPO / "rules"
# Each shipped sample and the shipped rules it must match, exactly.
EXPECTED = {
    "config_create.redis": ["onboard-new-config"],
    "thing_bootstrap.json": ["push-config-on-bootstrap"],
    "thing_bootstrap_failed.redis": ["bootstrap-failed"],
    "change_state.json": ["state-changed"],
    "channel_remove_handler.redis": ["drop-removed-channel"],
    "update_connections.redis": ["connections-updated"],
    "thing_remove.json": ["thing-removed"],
    "mqtt_connect.json": ["mqtt-presence"],
    "cert_update.redis": ["validate-config-cert"],
}
# Rules whose sample is made at test time (a certificate that expires soon cannot be a fixed file).
GENERATED = {"rotate-on-bootstrap-when-due"}
# Shipped disabled (a disabled rule listens to nothing, so no sample matches it).
OFF_BY_DEFAULT = {"zero-touch-provision"}


def run(event_file: Path, expect: list[str] | None = None, rules: Path = RULES) -> tuple[int, str]:
    out = io.StringIO()
    code = dry_run_command(event_file, rules, registry(), Decoder(), out, expect=expect)
    return code, out.getvalue()


def test_every_sample_is_listed_and_every_shipped_rule_has_a_sample() -> None:
    assert sorted(p.name for p in SAMPLES.iterdir()) == sorted(EXPECTED)
    out = io.StringIO()
    assert check_command(RULES, registry(), out) == EXIT_OK
    shipped = int(out.getvalue().split()[1])
    assert len({r for rules in EXPECTED.values() for r in rules} | GENERATED | OFF_BY_DEFAULT) == shipped


@pytest.mark.parametrize(("sample", "expected"), sorted(EXPECTED.items()))
def test_shipped_samples_match_exactly_their_rules(sample: str, expected: list[str]) -> None:
    code, text = run(SAMPLES / sample, expect=expected)
    assert code == EXIT_OK, text
    for rule in expected:
        assert f"MATCH {rule}" in text
    assert "would run " in text
    assert "<error" not in text


def test_misses_say_why_and_actions_are_rendered() -> None:
    _, text = run(SAMPLES / "thing_bootstrap.json")
    assert "miss  bootstrap-failed: 'not event.success' is False" in text
    assert "miss  onboard-new-config: listens to ['config.create']" in text
    assert (
        "would run push (bootstrap.update_content): {'config_id': '74f00d13-d370-42c0-b528-04fff995275c'"
        in text
    )
    assert "'bootstrapped_at_ns': 1693339161600369325" in text  # a number stays a number
    assert "'channel_id': '<at run time: {{ results.config.control_channel_id }}>'" in text
    assert "thing.bootstrap (published as bootstrap.thing.bootstrap)" in text


def test_secrets_are_masked_in_the_dry_run(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.toml").write_text(
        '[[rule]]\nname = "leak"\non = ["config.create"]\n[[rule.actions]]\ntype = "log"\n'
        'message = "key={{ event.client_key }}"\nfields = { client_key = "{{ event.client_key }}" }\n'
    )
    code, text = run(SAMPLES / "config_create.redis", rules=rules)
    assert code == EXIT_OK
    assert "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC" not in text
    assert "-----BEGIN" not in text  # the key is a Secret: rendered as the mask, header and all
    assert "'message': 'key=***'" in text
    assert "'client_key': '***'" in text


def test_exit_codes(tmp_path: Path) -> None:
    assert run(SAMPLES / "config_create.redis", expect=["bootstrap-failed"])[0] == EXIT_MISMATCH
    unmatched = tmp_path / "e.json"
    unmatched.write_text('{"operation": "user.view", "id": "u"}')
    assert run(unmatched)[0] == EXIT_MISMATCH
    assert run(unmatched, expect=[])[0] == EXIT_OK
    broken = tmp_path / "b.json"
    broken.write_text('{"operation": ')
    code, text = run(broken)  # a malformed event is reported (the file is read): a mismatch
    assert (code, "MALFORMED" in text) == (EXIT_MISMATCH, True)
    assert run(tmp_path / "missing.json")[0] == EXIT_ERROR
    bad_rules = tmp_path / "rules"
    bad_rules.mkdir()
    (bad_rules / "r.toml").write_text("[[rule]]\nname = 'x'\n")
    code, text = run(SAMPLES / "config_create.redis", rules=bad_rules)
    assert code == EXIT_ERROR
    assert "r.toml:1: rule 'x'" in text


def test_the_cli_end_to_end(tmp_path: Path) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "reactor", *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    ok = cli("rules", "test", "--event", str(SAMPLES / "thing_remove.json"), "--expect", "thing-removed")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "MATCH thing-removed" in ok.stdout
    assert cli("rules", "check").returncode == 0
    bad = tmp_path / "rules"
    bad.mkdir()
    (bad / "x.toml").write_text("[[rule]\n")
    result = cli("rules", "check", str(bad))
    assert result.returncode == 1
    assert "x.toml:1: invalid TOML" in result.stdout


def test_rotation_rule_matches_a_certificate_due_soon(tmp_path: Path) -> None:
    from tests.certs.corpus import Corpus

    corpus = Corpus()
    due = corpus.pem("expiring-soon").replace("\n", "")  # 5 days left, on one line as events carry it
    fresh = corpus.pem("valid").replace("\n", "")
    for name, pem in (("due", due), ("fresh", fresh)):
        (tmp_path / f"{name}.json").write_text(
            json.dumps(
                {
                    "operation": "thing.bootstrap",
                    "thing_id": "74f00d13-d370-42c0-b528-04fff995275c",
                    "external_id": "FF-41",
                    "success": True,
                    "channels": ["0cbd957b-1f5e-4bb4-b4ac-06dd770a7f5d"],
                    "client_cert": pem,
                }
            )
        )
    code, text = run(
        tmp_path / "due.json", expect=["push-config-on-bootstrap", "rotate-on-bootstrap-when-due"]
    )
    assert code == EXIT_OK, text
    assert "would run actions[0] (certs.rotate)" in text
    code, text = run(tmp_path / "fresh.json", expect=["push-config-on-bootstrap"])
    assert code == EXIT_OK, text
    assert "(event.client_cert | certinfo).days_left < 30' is False" in text


HOSTILE_RULES = """
[[rule]]
name = "recurse"
on = ["config.create"]
[[rule.actions]]
type = "log"
message = "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}"

[[rule]]
name = "hog"
on = ["config.create"]
when = ["([0] * 999999) | map('string') | map('center', 3) | map('trim') | list | length > 0"]
[[rule.actions]]
type = "noop"
"""


def test_a_recursing_macro_or_a_hog_is_one_line_in_the_dry_run(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.toml").write_text(HOSTILE_RULES)
    event_file = tmp_path / "e.json"
    event_file.write_text('{"operation": "config.create", "thing_id": "t"}')
    code, text = run(event_file, rules=rules)
    assert "Traceback" not in text
    assert code == EXIT_OK, text
    (recurse,) = [line for line in text.splitlines() if "would run" in line]
    assert "<error: " in recurse
    assert "recursion too deep" in recurse
    (hog,) = [line for line in text.splitlines() if "hog" in line]
    assert "FAILS the event: went past an evaluation bound" in hog
    assert "rules.eval_timeout_s" in hog


def test_a_malformed_event_is_reported_and_the_file_goes_on(tmp_path: Path) -> None:
    events = tmp_path / "mixed.jsonl"
    events.write_text(
        '{"operation":"config.create","thing_id":"a","external_id":"e","channels":["c"]}\n'
        '{"operation": 5 nope\n'
        "[1, 2]\n"
        '{"operation":"thing.bootstrap","thing_id":"b","external_id":"e","success":true,"channels":["c"]}\n'
    )
    code, text = run(events)
    assert code == EXIT_MISMATCH, text
    assert text.count("MALFORMED") == 2
    assert "MATCH onboard-new-config" in text
    assert "MATCH push-config-on-bootstrap" in text
