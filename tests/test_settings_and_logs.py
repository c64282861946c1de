"""Settings validation at start, and log lines: structured, attributed, never holding a secret."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from app.logs import configure_logging, log_context
from app.settings import Settings, SettingsError


@pytest.mark.usefixtures("clean_env")
def test_missing_settings_are_all_named_in_one_message() -> None:
    settings = Settings(_env_file=None)
    with pytest.raises(SettingsError) as err:
        settings.check_for_server()
    message = str(err.value)
    for name in ("GITHUB_WEBHOOK_SECRET", "GITHUB_APP_ID", "GITHUB_PRIVATE_KEY"):
        assert name in message


@pytest.mark.usefixtures("clean_env")
def test_private_key_that_is_not_rsa_pem_is_reported() -> None:
    settings = Settings(
        github_app_id="1",
        github_webhook_secret="s",
        github_private_key="-----BEGIN RSA PRIVATE KEY-----\nnope\n-----END RSA PRIVATE KEY-----",
        _env_file=None,
    )
    with pytest.raises(SettingsError, match="not a valid RSA private key in PEM format"):
        settings.check_for_server()


@pytest.mark.usefixtures("clean_env")
def test_private_key_path_and_escaped_newlines(rsa_key: tuple[str, str], tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    path.write_text(rsa_key[0])
    from_path = Settings(
        github_app_id="1",
        github_webhook_secret="s",
        github_private_key_path=path,
        _env_file=None,
    )
    from_path.check_for_server()
    escaped = Settings(
        github_app_id="1",
        github_webhook_secret="s",
        github_private_key=rsa_key[0].replace("\n", "\\n"),
        _env_file=None,
    )
    escaped.check_for_server()
    assert escaped.private_key_pem() == rsa_key[0]
    missing = Settings(
        github_app_id="1",
        github_webhook_secret="s",
        github_private_key_path=tmp_path / "absent.pem",
        _env_file=None,
    )
    with pytest.raises(SettingsError, match="cannot read"):
        missing.check_for_server()


@pytest.mark.usefixtures("clean_env")
def test_settings_read_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_APP_ID", "123")
    monkeypatch.setenv("GITHUB_API_URL", "https://ghe.example.com/api/v3/")
    monkeypatch.setenv("CF_ACCOUNT_ID", "acc")
    monkeypatch.setenv("CF_AIG_GATEWAY_ID", "gw")
    monkeypatch.setenv("CF_ISSUED_AIGATEWAY_TOKEN", "issued-token")
    settings = Settings(_env_file=None)
    assert settings.github_app_id == "123"
    assert settings.github_api_url == "https://ghe.example.com/api/v3"
    assert settings.gateway_url == "https://gateway.ai.cloudflare.com/v1/acc/gw"
    token = settings.gateway_token
    assert token is not None and token.get_secret_value() == "issued-token"
    monkeypatch.setenv("AIG_GATEWAY_URL", "http://127.0.0.1:9999/gw/")
    monkeypatch.setenv("CF_AIG_TOKEN", "explicit-token")
    settings = Settings(_env_file=None)
    assert settings.gateway_url == "http://127.0.0.1:9999/gw"
    token = settings.gateway_token
    assert token is not None and token.get_secret_value() == "explicit-token"
    assert "explicit-token" not in repr(settings)


def test_json_log_lines_carry_delivery_context_and_redact_secrets() -> None:
    stream = io.StringIO()
    redactor = configure_logging(
        fmt="json", level="INFO", secrets=["super-secret-value"], stream=stream
    )
    redactor.add("ghs_installationtoken123")
    log = logging.getLogger("app.test")
    try:
        with log_context(
            delivery_id="d-9", event="pull_request", installation_id=7, repository="o/r"
        ):
            log.info("token is %s and secret %s", "ghs_installationtoken123", "super-secret-value")
            try:
                raise RuntimeError("failed with super-secret-value inside")
            except RuntimeError:
                log.exception("handler failed")
        log.info("outside")
    finally:
        logging.getLogger().handlers.clear()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["delivery_id"] == "d-9"
    assert lines[0]["event"] == "pull_request"
    assert lines[0]["installation_id"] == 7
    assert lines[0]["repository"] == "o/r"
    assert lines[0]["msg"] == "token is [redacted] and secret [redacted]"
    assert "RuntimeError" in lines[1]["exc"]
    assert "super-secret-value" not in stream.getvalue()
    assert "ghs_installationtoken123" not in stream.getvalue()
    assert "delivery_id" not in lines[2]


def test_text_log_format() -> None:
    stream = io.StringIO()
    configure_logging(fmt="text", level="INFO", secrets=[], stream=stream)
    try:
        with log_context(delivery_id="d-1"):
            logging.getLogger("app.test").info("hello")
    finally:
        logging.getLogger().handlers.clear()
    assert stream.getvalue().rstrip().endswith(" INFO app.test: hello delivery_id=d-1")


class Opaque:
    """An ``extra`` value that is neither text nor a container: logged as its text."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text


def log_lines(fmt: str, secrets: list[str], emit: Callable[[logging.Logger], None]) -> str:
    stream = io.StringIO()
    configure_logging(fmt=fmt, level="INFO", secrets=secrets, stream=stream)
    try:
        emit(logging.getLogger("app.test"))
    finally:
        logging.getLogger().handlers.clear()
    return stream.getvalue()


def with_extras(log: logging.Logger) -> None:
    with log_context(delivery_id="d-1"):
        log.warning(
            "gateway answered %d",
            429,
            extra={
                "provider": "anthropic",
                "reason": "rate limited",
                "log_id": 12,
                "attempt": None,
                "level": "not the line's level",
            },
        )


def test_json_lines_carry_every_extra_field_and_no_record_attribute() -> None:
    [line] = [json.loads(x) for x in log_lines("json", [], with_extras).splitlines()]
    assert line["msg"] == "gateway answered 429"
    assert line["level"] == "warning"
    assert line["extra.level"] == "not the line's level"
    assert (line["delivery_id"], line["provider"], line["reason"], line["log_id"]) == (
        "d-1",
        "anthropic",
        "rate limited",
        12,
    )
    assert "attempt" not in line  # None: nothing to say
    assert set(line) == {
        "ts",
        "level",
        "logger",
        "msg",
        "delivery_id",
        "provider",
        "reason",
        "log_id",
        "extra.level",
    }


def test_text_lines_carry_every_extra_field_as_key_value_pairs() -> None:
    [line] = log_lines("text", [], with_extras).splitlines()
    assert line.endswith(
        " WARNING app.test: gateway answered 429 delivery_id=d-1 provider=anthropic "
        'reason="rate limited" log_id=12 level="not the line\'s level"'
    )
    for attribute in ("lineno", "funcName", "pathname", "msecs", "args", "process"):
        assert f"{attribute}=" not in line


def every_secret_everywhere(secrets: list[str]) -> Callable[[logging.Logger], None]:
    def emit(log: logging.Logger) -> None:
        for secret in secrets:
            log.info(f"in the message: {secret}")
            log.info("in an argument: %s", secret)
            log.info(
                "in extras",
                extra={
                    "text": f"Bearer {secret}",
                    "nested": {"headers": [f"x-api-key: {secret}"], secret: 1},
                    "opaque": Opaque(f"token={secret}"),
                },
            )
            try:
                raise RuntimeError(f"failed with {secret} inside")
            except RuntimeError:
                log.exception("in the exception")

    return emit


@pytest.mark.parametrize("fmt", ["json", "text"])
@pytest.mark.usefixtures("clean_env")
def test_every_secret_is_redacted_wherever_it_appears(
    fmt: str, rsa_key: tuple[str, str], tmp_path: Path
) -> None:
    key_file = tmp_path / "app.pem"
    key_file.write_text(rsa_key[0])
    settings = Settings(
        github_app_id="1",
        github_private_key_path=key_file,
        github_webhook_secret="webhook-secret-value",
        cf_aig_token="cf-aig-token-value",
        anthropic_api_key="sk-ant-key-value",
        openai_api_key="sk-openai-key-value",
        operator_token="operator-token-value",
        _env_file=None,
    )
    key_line = rsa_key[0].splitlines()[5]
    leaks = [
        rsa_key[0],
        key_line,
        "webhook-secret-value",
        "cf-aig-token-value",
        "sk-ant-key-value",
        "sk-openai-key-value",
        "operator-token-value",
    ]
    output = log_lines(fmt, settings.secret_values(), every_secret_everywhere(leaks))
    assert output.count("[redacted]") >= 5 * len(leaks)
    for leak in leaks:
        assert leak not in output
    assert key_line[:20] not in output
