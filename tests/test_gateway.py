"""The gateway client against a fake gateway over loopback: endpoints, the token guard, provider
keys, metadata, structured output and repair, retries, timeouts, cost, and secrets in errors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from email.utils import formatdate
from typing import Any

import httpx2
import pytest
from pydantic import SecretStr
from pytest_aiohttp import AiohttpServer

from app.gateway import (
    PRICES,
    CallMetadata,
    GatewayClients,
    GatewayConfigError,
    ReviewCall,
    Usage,
    anthropic_endpoint,
    build_reviewers,
    compute_cost,
    max_cost,
    openai_endpoint,
    price_for,
    should_send_gateway_token,
)
from app.gateway.anthropic_adapter import accepts_temperature as anthropic_accepts_temperature
from app.gateway.clients import parse_retry_after
from app.gateway.openai_adapter import accepts_temperature as openai_accepts_temperature
from app.gateway.openai_adapter import strict_review_schema
from app.gateway.throttle import ProviderGate
from app.gateway.urls import BYOK_PLACEHOLDER, make_http_client
from app.review.model import Category, Finding, Severity, Verdict, review_json_schema
from app.settings import Settings
from tests.conftest import SettingsFactory
from tests.fakes.gateway import (
    MALFORMED,
    Delay,
    Disconnect,
    FakeGateway,
    FakeUsage,
    HttpError,
    Outcome,
    Provider,
    RecordedRequest,
    Redirect,
    Refusal,
    Reply,
    Text,
    invalid_review,
)

TOKEN = "cf-aig-token-0123456789abcdef"
ANTHROPIC_KEY = "sk-ant-api03-secret-anthropic-key"
OPENAI_KEY = "sk-proj-secret-openai-key-value"
SECRETS = (TOKEN, ANTHROPIC_KEY, OPENAI_KEY, BYOK_PLACEHOLDER)
METADATA = CallMetadata(repository="octo/widgets", pr=42, installation=7, delivery="d-1")
PROVIDERS: tuple[Provider, ...] = ("anthropic", "openai")
CF = "https://gateway.ai.cloudflare.com/v1/acc/gw"


class FakeTimer:
    """An injected clock and sleep: waits are recorded and advance the clock, nothing sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
async def gateway(aiohttp_server: AiohttpServer) -> FakeGateway:
    """An authenticated gateway: requests without the token get 401."""
    fake = FakeGateway(token=TOKEN)
    return fake.bind(await aiohttp_server(fake.make_app()))


@pytest.fixture
async def proxy(aiohttp_server: AiohttpServer) -> FakeGateway:
    """A second server (same host, other port) standing for a proxy or direct endpoint."""
    fake = FakeGateway(prefix="/proxy")
    return fake.bind(await aiohttp_server(fake.make_app()))


@pytest.fixture
def timer() -> FakeTimer:
    return FakeTimer()


@pytest.fixture
def settings_for(
    make_settings: SettingsFactory, gateway: FakeGateway, clean_env: None
) -> Callable[..., Settings]:
    def factory(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "aig_gateway_url": gateway.url,
            "cf_aig_token": TOKEN,
            "anthropic_api_key": ANTHROPIC_KEY,
            "openai_api_key": OPENAI_KEY,
            "model_max_retries": 3,
            "model_retry_budget_seconds": 60.0,
        }
        values.update(overrides)
        return make_settings(**values)

    return factory


@asynccontextmanager
async def open_clients(
    settings: Settings, timer: FakeTimer, *, http_timeout: float | None = 5.0
) -> AsyncIterator[GatewayClients]:
    clients = build_reviewers(
        settings,
        http_timeout=http_timeout,
        sleep=timer.sleep,
        clock=timer.clock,
        jitter=lambda: 1.0,
    )
    async with clients:
        yield clients


@pytest.fixture
async def clients(
    settings_for: Callable[..., Settings], timer: FakeTimer
) -> AsyncIterator[GatewayClients]:
    async with open_clients(settings_for(), timer) as built:
        yield built


async def review(clients: GatewayClients, provider: Provider, **kwargs: Any) -> ReviewCall:
    return await clients.by_provider(provider).review(
        system="You review code.",
        prompt=kwargs.pop("prompt", "diff --git a/x b/x"),
        metadata=METADATA,
        **kwargs,
    )


def assert_no_secrets(*texts: object) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in str(text)


def all_header_values(*servers: FakeGateway) -> Iterator[tuple[str, str]]:
    for server in servers:
        for request in server.requests:
            yield from request.headers.items()


# --------------------------------------------------------------------------- endpoints


def test_endpoints_through_a_gateway_url(make_settings: SettingsFactory, clean_env: None) -> None:
    settings = make_settings(aig_gateway_url="https://gw.example.com/v1/acc/gw/")
    anthropic, openai = anthropic_endpoint(settings), openai_endpoint(settings)
    assert anthropic.base_url == "https://gw.example.com/v1/acc/gw/anthropic"
    assert anthropic.request_url == "https://gw.example.com/v1/acc/gw/anthropic/v1/messages"
    assert openai.base_url == "https://gw.example.com/v1/acc/gw/openai"
    assert openai.request_url == "https://gw.example.com/v1/acc/gw/openai/chat/completions"
    assert anthropic.via_gateway and openai.via_gateway
    assert anthropic.api_key is None and openai.api_key is None


def test_endpoints_from_cloudflare_ids(make_settings: SettingsFactory, clean_env: None) -> None:
    settings = make_settings(cf_account_id="acc", cf_aig_gateway_id="gw")
    assert anthropic_endpoint(settings).request_url == f"{CF}/anthropic/v1/messages"
    assert openai_endpoint(settings).request_url == f"{CF}/openai/chat/completions"


def test_base_urls_override_the_gateway_per_provider(
    make_settings: SettingsFactory, clean_env: None
) -> None:
    settings = make_settings(
        cf_account_id="acc",
        cf_aig_gateway_id="gw",
        anthropic_base_url="https://proxy.internal/anthropic/",
    )
    anthropic, openai = anthropic_endpoint(settings), openai_endpoint(settings)
    assert (anthropic.route, anthropic.base_url) == ("base_url", "https://proxy.internal/anthropic")
    assert (openai.route, openai.base_url) == ("gateway", f"{CF}/openai")


def test_public_defaults_need_a_key(make_settings: SettingsFactory, clean_env: None) -> None:
    settings = make_settings(anthropic_api_key=ANTHROPIC_KEY, openai_api_key=OPENAI_KEY)
    anthropic, openai = anthropic_endpoint(settings), openai_endpoint(settings)
    assert anthropic.request_url == "https://api.anthropic.com/v1/messages"
    assert openai.request_url == "https://api.openai.com/v1/chat/completions"
    assert anthropic.route == openai.route == "direct"


def test_no_endpoint_is_a_clear_configuration_error(
    make_settings: SettingsFactory, clean_env: None
) -> None:
    with pytest.raises(GatewayConfigError) as caught:
        build_reviewers(make_settings())
    message = str(caught.value)
    for name in (
        "AIG_GATEWAY_URL",
        "CF_ACCOUNT_ID",
        "ANTHROPIC_BASE_URL",
        "ANTHROPIC_API_KEY",
        "OPENAI_BASE_URL",
        "OPENAI_API_KEY",
    ):
        assert name in message


def test_bad_urls_are_configuration_errors(make_settings: SettingsFactory, clean_env: None) -> None:
    with pytest.raises(GatewayConfigError, match="ANTHROPIC_BASE_URL"):
        anthropic_endpoint(make_settings(anthropic_base_url="proxy.internal/anthropic"))
    with pytest.raises(GatewayConfigError, match="user or password"):
        openai_endpoint(make_settings(aig_gateway_url=f"https://user:{TOKEN}@gw.example.com/v1"))


# --------------------------------------------------------------------------- the token guard


@pytest.mark.parametrize(
    ("request_url", "gateway_url", "expected"),
    [
        (f"{CF}/anthropic/v1/messages", CF, True),
        (f"{CF}/openai/chat/completions", CF, True),
        (CF, CF, True),
        (f"{CF}/", CF, True),
        (f"{CF}/openai/chat/completions", CF + "/", True),
        # default port, explicit or implicit, either side
        ("https://gateway.ai.cloudflare.com:443/v1/acc/gw/openai", CF, True),
        (f"{CF}/openai", "https://gateway.ai.cloudflare.com:443/v1/acc/gw", True),
        # host names are case-insensitive; paths are not
        ("https://GATEWAY.AI.Cloudflare.COM/v1/acc/gw/openai", CF, True),
        ("https://gateway.ai.cloudflare.com/V1/ACC/GW/openai", CF, False),
        # same host, other port or scheme
        ("https://gateway.ai.cloudflare.com:8443/v1/acc/gw/openai", CF, False),
        ("http://gateway.ai.cloudflare.com/v1/acc/gw/openai", CF, False),
        ("http://127.0.0.1:8001/gw/openai", "http://127.0.0.1:8000/gw", False),
        ("http://127.0.0.1:8000/gw/openai", "http://127.0.0.1:8000/gw", True),
        ("http://localhost:8000/gw/openai", "http://127.0.0.1:8000/gw", False),
        # look-alike hosts
        ("https://gateway.ai.cloudflare.com.evil.example/v1/acc/gw/openai", CF, False),
        ("https://evilgateway.ai.cloudflare.com/v1/acc/gw/openai", CF, False),
        ("https://ai.cloudflare.com/v1/acc/gw/openai", CF, False),
        # path prefixes are segment-wise
        ("https://gateway.ai.cloudflare.com/v1/acc/gw2/openai", CF, False),
        ("https://gateway.ai.cloudflare.com/v1/acc/gw2", CF, False),
        ("https://gateway.ai.cloudflare.com/v1/acc", CF, False),
        ("https://gateway.ai.cloudflare.com/v1/acc/other/openai", CF, False),
        ("https://gateway.ai.cloudflare.com/v1/acc/gw/../other/openai", CF, False),
        ("https://gateway.ai.cloudflare.com/v1/acc/gw/%2e%2e/other", CF, False),
        # userinfo tricks
        ("https://gateway.ai.cloudflare.com@evil.example/v1/acc/gw/openai", CF, False),
        ("https://gateway.ai.cloudflare.com:443@evil.example/v1/acc/gw", CF, False),
        ("https://user:pw@gateway.ai.cloudflare.com/v1/acc/gw/openai", CF, False),
        ("https://gateway.ai.cloudflare.com\\@evil.example/v1/acc/gw", CF, False),
        # direct providers, nothing configured, garbage
        ("https://api.anthropic.com/v1/messages", CF, False),
        ("https://api.openai.com/v1/chat/completions", CF, False),
        (f"{CF}/openai", None, False),
        (f"{CF}/openai", "", False),
        ("not a url", CF, False),
        ("https://gateway.ai.cloudflare.com:notaport/v1/acc/gw", CF, False),
        (
            "ftp://gateway.ai.cloudflare.com/v1/acc/gw",
            "ftp://gateway.ai.cloudflare.com/v1/acc/gw",
            False,
        ),
    ],
)
def test_gateway_token_guard(request_url: str, gateway_url: str | None, expected: bool) -> None:
    assert should_send_gateway_token(request_url, gateway_url) is expected


async def test_guard_strips_credentials_on_a_redirect_hop(
    gateway: FakeGateway, proxy: FakeGateway
) -> None:
    """Even a client that follows redirects sends no token or key to the redirect target."""
    gateway.openai.push(Redirect(proxy.openai_base_url + "/chat/completions"))
    client = make_http_client(
        gateway_url=gateway.url,
        gateway_token=SecretStr(TOKEN),
        endpoint_url=gateway.openai_base_url,
        timeout=5.0,
        follow_redirects=True,
    )
    async with client:
        response = await client.post(
            gateway.openai_base_url + "/chat/completions",
            json={"model": "gpt-5-mini", "messages": [{"role": "user", "content": "hi"}]},
            headers={
                "authorization": f"Bearer {OPENAI_KEY}",
                "cf-aig-authorization": "Bearer injected-by-someone-else",
            },
        )
    assert response.status_code == 200
    (first,) = gateway.requests
    assert first.header("cf-aig-authorization") == f"Bearer {TOKEN}"
    assert first.header("authorization") == f"Bearer {OPENAI_KEY}"
    (second,) = proxy.requests
    assert second.header("cf-aig-authorization") is None
    assert second.header("authorization") is None


async def test_sdk_clients_do_not_follow_redirects(
    clients: GatewayClients, gateway: FakeGateway, proxy: FakeGateway
) -> None:
    gateway.anthropic.push(Redirect(proxy.anthropic_base_url + "/v1/messages"))
    call = await review(clients, "anthropic")
    assert call.error == "http 307"
    assert proxy.requests == []


# --------------------------------------------------------------------------- end to end


async def test_reviews_through_the_gateway_with_every_header(
    clients: GatewayClients, gateway: FakeGateway
) -> None:
    finding = Finding(
        path="src/app.py",
        line=10,
        end_line=12,
        severity=Severity.MAJOR,
        category=Category.BUG,
        title="Off by one",
        body="The loop skips the last item.",
        suggestion="for item in items:",
    )
    gateway.anthropic.set_review(verdict="request_changes", confidence=0.4, findings=[finding])
    gateway.openai.set_review(verdict="comment", confidence=0.7)

    claude, gpt = await asyncio.gather(review(clients, "anthropic"), review(clients, "openai"))

    assert claude.ok and gpt.ok
    assert claude.review is not None and gpt.review is not None
    assert claude.review.verdict is Verdict.REQUEST_CHANGES
    assert claude.review.findings == [finding]
    assert gpt.review.verdict is Verdict.COMMENT and gpt.review.confidence == 0.7
    assert (claude.provider, claude.model) == ("anthropic", "claude-sonnet-4-6")
    assert (gpt.provider, gpt.model) == ("openai", "gpt-5-mini")
    assert claude.attempts == gpt.attempts == 1 and not claude.repaired

    (a_request,) = gateway.requests_for("anthropic")
    (o_request,) = gateway.requests_for("openai")
    assert a_request.path == "/v1/fake-account/fake-gateway/anthropic/v1/messages"
    assert o_request.path == "/v1/fake-account/fake-gateway/openai/chat/completions"
    for request in (a_request, o_request):
        assert request.header("cf-aig-authorization") == f"Bearer {TOKEN}"
        assert request.metadata == {
            "app": "aigateway",
            "repository": "octo/widgets",
            "pr": 42,
            "delivery": "d-1",
            "purpose": "review",
        }
    # native provider headers
    assert a_request.header("x-api-key") == ANTHROPIC_KEY
    assert a_request.header("anthropic-version")
    assert a_request.header("authorization") is None
    assert o_request.header("authorization") == f"Bearer {OPENAI_KEY}"
    assert o_request.header("x-api-key") is None
    # log ids come from the response header
    assert claude.log_id and claude.log_id.startswith("01JFAKE")
    assert gpt.log_id and gpt.log_id != claude.log_id
    # structured output requests
    body = a_request.body
    assert body["tool_choice"] == {"type": "tool", "name": "submit_review"}
    assert [tool["name"] for tool in body["tools"]] == ["submit_review"]
    assert body["tools"][0]["input_schema"] == review_json_schema()
    assert body["system"] == "You review code."
    assert body["max_tokens"] == 4096
    fmt = o_request.body["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "model_review"
    assert fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"] == strict_review_schema()
    assert o_request.body["max_completion_tokens"] == 4096
    assert o_request.body["messages"][0] == {"role": "system", "content": "You review code."}


async def test_both_providers_are_in_flight_at_once(
    clients: GatewayClients, gateway: FakeGateway
) -> None:
    """Each fake answer waits until the other provider's request has arrived."""
    arrived = {provider: asyncio.Event() for provider in PROVIDERS}

    def waiting_for(other: Provider, me: Provider) -> Callable[[RecordedRequest], Any]:
        async def respond(request: RecordedRequest) -> Outcome:
            arrived[me].set()
            await asyncio.wait_for(arrived[other].wait(), timeout=5)
            return Reply(gateway.script(me).review)

        return respond

    gateway.anthropic.respond_with(waiting_for("openai", "anthropic"))
    gateway.openai.respond_with(waiting_for("anthropic", "openai"))
    calls = await asyncio.gather(review(clients, "anthropic"), review(clients, "openai"))
    assert all(call.ok for call in calls)
    a_request, o_request = gateway.requests_for("anthropic")[0], gateway.requests_for("openai")[0]
    assert abs(a_request.received_at - o_request.received_at) < 5


async def test_concurrent_reviews_share_one_client(
    clients: GatewayClients, gateway: FakeGateway
) -> None:
    gateway.anthropic.latency = 0.2
    calls = await asyncio.gather(*(review(clients, "anthropic") for _ in range(5)))
    assert all(call.ok for call in calls)
    assert gateway.max_in_flight("anthropic") == 5


async def test_a_proxy_base_url_never_receives_the_gateway_token(
    settings_for: Callable[..., Settings],
    gateway: FakeGateway,
    proxy: FakeGateway,
    timer: FakeTimer,
) -> None:
    settings = settings_for(anthropic_base_url=proxy.anthropic_base_url)
    async with open_clients(settings, timer) as clients:
        claude, gpt = await asyncio.gather(review(clients, "anthropic"), review(clients, "openai"))
    assert claude.ok and gpt.ok
    (proxied,) = proxy.requests
    assert proxied.provider == "anthropic"
    assert proxied.header("cf-aig-authorization") is None
    assert proxied.header("x-api-key") == ANTHROPIC_KEY
    assert gateway.requests_for("anthropic") == []
    (through_gateway,) = gateway.requests_for("openai")
    assert through_gateway.header("cf-aig-authorization") == f"Bearer {TOKEN}"


async def test_byok_sends_no_provider_key_and_no_placeholder(
    settings_for: Callable[..., Settings], gateway: FakeGateway, timer: FakeTimer
) -> None:
    settings = settings_for(anthropic_api_key=None, openai_api_key=None)
    async with open_clients(settings, timer) as clients:
        calls = await asyncio.gather(review(clients, "anthropic"), review(clients, "openai"))
    assert all(call.ok for call in calls)
    assert len(gateway.requests) == 2
    for request in gateway.requests:
        assert request.header("x-api-key") is None
        assert request.header("authorization") is None
        assert request.header("cf-aig-authorization") == f"Bearer {TOKEN}"
    for _name, value in all_header_values(gateway):
        assert BYOK_PLACEHOLDER not in value


async def test_no_token_configured_means_no_token_header(
    aiohttp_server: AiohttpServer,
    make_settings: SettingsFactory,
    clean_env: None,
    timer: FakeTimer,
) -> None:
    open_gateway = FakeGateway()
    open_gateway.bind(await aiohttp_server(open_gateway.make_app()))
    settings = make_settings(aig_gateway_url=open_gateway.url, openai_api_key=OPENAI_KEY)
    async with open_clients(settings, timer) as clients:
        assert (await review(clients, "openai")).ok
        assert (await review(clients, "anthropic")).ok
    for request in open_gateway.requests:
        assert request.header("cf-aig-authorization") is None


async def test_an_authenticated_gateway_rejects_a_wrong_token(
    settings_for: Callable[..., Settings], gateway: FakeGateway, timer: FakeTimer
) -> None:
    settings = settings_for(cf_aig_token="not-the-right-token")
    async with open_clients(settings, timer) as clients:
        call = await review(clients, "openai")
    assert call.error == "http 401"
    assert call.attempts == 1
    assert timer.sleeps == []


def test_metadata_header_is_small_json() -> None:
    value = json.loads(METADATA.header_value())
    assert len(value) <= 5
    assert all(isinstance(v, str | int | float | bool) for v in value.values())
    assert json.loads(CallMetadata(repository="o/r").header_value()) == {
        "app": "aigateway",
        "repository": "o/r",
        "purpose": "review",
    }


# --------------------------------------------------------------------------- structured output


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_invalid_output_is_repaired_once(
    clients: GatewayClients, gateway: FakeGateway, provider: Provider
) -> None:
    gateway.script(provider).push(Reply(invalid_review()))
    call = await review(clients, provider)
    assert call.ok and call.repaired
    assert call.attempts == 2 and len(call.log_ids) == 2
    first, second = gateway.requests_for(provider)
    assert not first.is_repair and second.is_repair
    assert "verdict" in second.prompt and "confidence" in second.prompt
    if provider == "anthropic":
        assistant, answer = second.messages[-2:]
        assert assistant["content"][0]["type"] == "tool_use"
        result = answer["content"][0]
        assert result["type"] == "tool_result" and result["is_error"] is True
        assert result["tool_use_id"] == assistant["content"][0]["id"]
    else:
        assistant, answer = second.messages[-2:]
        assert assistant["role"] == "assistant" and "maybe" in assistant["content"]
        assert answer["role"] == "user"


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_text_instead_of_structured_output_is_repaired(
    clients: GatewayClients, gateway: FakeGateway, provider: Provider
) -> None:
    gateway.script(provider).push(MALFORMED)
    call = await review(clients, provider)
    assert call.ok and call.repaired and call.attempts == 2


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_twice_invalid_is_a_failed_review(
    clients: GatewayClients, gateway: FakeGateway, provider: Provider
) -> None:
    usage = FakeUsage(input_tokens=100, output_tokens=10)
    gateway.script(provider).push(
        Reply(invalid_review(), usage), Text("still no json", usage=usage)
    )
    call = await review(clients, provider)
    assert call.review is None
    assert call.error == "invalid output after repair"
    assert call.attempts == 2 and call.repaired
    assert (call.input_tokens, call.output_tokens) == (200, 20)
    assert len(gateway.requests_for(provider)) == 2


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_refusal_is_a_failed_review_without_repair(
    clients: GatewayClients, gateway: FakeGateway, provider: Provider
) -> None:
    gateway.script(provider).push(Refusal())
    call = await review(clients, provider)
    assert (call.review, call.error, call.attempts) == (None, "refused", 1)


async def test_truncated_openai_output_says_so_in_the_repair(
    clients: GatewayClients, gateway: FakeGateway
) -> None:
    gateway.openai.push(Text('{"summary": "cut', stop_reason="length"))
    call = await review(clients, "openai")
    assert call.ok
    assert "cut off" in gateway.requests_for("openai")[1].prompt


async def test_strict_mode_nulls_validate(clients: GatewayClients, gateway: FakeGateway) -> None:
    answer = {
        "summary": "one finding",
        "verdict": "comment",
        "confidence": 0.8,
        "findings": [
            {
                "path": "a.py",
                "line": 3,
                "end_line": None,
                "severity": "minor",
                "category": "style",
                "title": "Name",
                "body": "Rename it.",
                "suggestion": None,
            }
        ],
    }
    gateway.openai.push(Reply(answer))
    call = await review(clients, "openai")
    assert call.ok and call.review is not None and not call.repaired
    assert call.review.findings[0].end_line is None


def test_strict_schema_requires_every_property_and_drops_length_keywords() -> None:
    schema = strict_review_schema()
    finding = schema["properties"]["findings"]["items"]
    assert set(finding["required"]) == set(finding["properties"])
    assert finding["properties"]["end_line"]["type"] == ["integer", "null"]
    assert finding["properties"]["suggestion"]["type"] == ["string", "null"]
    assert finding["properties"]["path"]["type"] == "string"
    assert finding["additionalProperties"] is False and schema["additionalProperties"] is False
    assert "maxLength" not in json.dumps(schema)
    assert "At most 200 characters" in finding["properties"]["title"]["description"]
    assert set(schema["required"]) == {"summary", "verdict", "confidence", "findings"}
    # the contract's schema itself is untouched
    assert "maxLength" in json.dumps(review_json_schema())


# --------------------------------------------------------------------------- retries


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_429_honours_retry_after(
    clients: GatewayClients, gateway: FakeGateway, timer: FakeTimer, provider: Provider
) -> None:
    gateway.script(provider).push(HttpError(429, retry_after=2), HttpError(429, retry_after="7"))
    call = await review(clients, provider)
    assert call.ok and call.attempts == 3
    assert timer.sleeps == [2.0, 7.0]
    assert len(call.log_ids) == 3


async def test_retry_after_ms_and_http_dates() -> None:
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert (
        parse_retry_after({"retry-after": formatdate(1_000_030, usegmt=True)}, now=1_000_000) == 30
    )
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_server_errors_back_off_exponentially(
    clients: GatewayClients, gateway: FakeGateway, timer: FakeTimer, provider: Provider
) -> None:
    overloaded = 529 if provider == "anthropic" else 503
    gateway.script(provider).push(HttpError(429), HttpError(500), HttpError(overloaded))
    call = await review(clients, provider)
    assert call.ok and call.attempts == 4
    assert timer.sleeps == [0.5, 1.0, 2.0]


async def test_anthropic_overloaded_529_is_retried(
    clients: GatewayClients, gateway: FakeGateway, timer: FakeTimer
) -> None:
    gateway.anthropic.push(HttpError(529), HttpError(529, retry_after=1))
    call = await review(clients, "anthropic")
    assert call.ok and call.attempts == 3
    assert timer.sleeps == [0.5, 1.0]


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("status", [400, 401, 403, 404])
async def test_client_errors_are_not_retried(
    clients: GatewayClients,
    gateway: FakeGateway,
    timer: FakeTimer,
    provider: Provider,
    status: int,
) -> None:
    gateway.script(provider).push(HttpError(status, message="nope"))
    call = await review(clients, provider)
    assert (call.review, call.error, call.status, call.attempts) == (
        None,
        f"http {status}",
        status,
        1,
    )
    assert call.detail == "nope"
    assert timer.sleeps == []
    assert call.log_id is not None


@pytest.mark.parametrize(
    ("provider", "code"),
    [("anthropic", "enforced_spend_limit_reached"), ("openai", "insufficient_quota")],
)
async def test_spend_caps_are_not_retried(
    clients: GatewayClients,
    gateway: FakeGateway,
    timer: FakeTimer,
    provider: Provider,
    code: str,
) -> None:
    gateway.script(provider).push(HttpError(429, code=code))
    call = await review(clients, provider)
    assert call.error == "spend limit (http 429)"
    assert call.attempts == 1 and timer.sleeps == []


async def test_retries_are_bounded_by_count(
    settings_for: Callable[..., Settings], gateway: FakeGateway, timer: FakeTimer
) -> None:
    async with open_clients(settings_for(model_max_retries=2), timer) as clients:
        gateway.openai.respond_with(lambda _request: HttpError(500))
        call = await review(clients, "openai")
    assert call.error == "http 500" and call.status == 500
    assert call.attempts == 3
    assert timer.sleeps == [0.5, 1.0]


async def test_retries_are_bounded_by_time(
    settings_for: Callable[..., Settings], gateway: FakeGateway, timer: FakeTimer
) -> None:
    settings = settings_for(model_max_retries=10, model_retry_budget_seconds=5.0)
    async with open_clients(settings, timer) as clients:
        gateway.anthropic.respond_with(lambda _request: HttpError(429, retry_after=3))
        call = await review(clients, "anthropic")
    assert call.error == "http 429"
    assert timer.sleeps == [3.0]
    assert call.attempts == 2


async def test_a_very_long_retry_after_is_not_waited_for(
    clients: GatewayClients, gateway: FakeGateway, timer: FakeTimer
) -> None:
    gateway.openai.push(HttpError(429, retry_after=3600))
    call = await review(clients, "openai")
    assert call.error == "http 429" and call.attempts == 1 and timer.sleeps == []


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_slow_answer_times_out(
    settings_for: Callable[..., Settings],
    gateway: FakeGateway,
    timer: FakeTimer,
    provider: Provider,
) -> None:
    async with open_clients(settings_for(model_max_retries=1), timer, http_timeout=0.2) as clients:
        gateway.script(provider).respond_with(lambda _request: Delay(10))
        call = await review(clients, provider)
    assert call.review is None and call.error == "timeout"
    assert call.attempts == 2 and timer.sleeps == [0.5]


async def test_a_timeout_is_retried_and_can_succeed(
    settings_for: Callable[..., Settings], gateway: FakeGateway, timer: FakeTimer
) -> None:
    async with open_clients(settings_for(), timer, http_timeout=0.2) as clients:
        gateway.anthropic.push(Delay(10))
        call = await review(clients, "anthropic")
    assert call.ok and call.attempts == 2


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_dropped_connection_is_retried(
    clients: GatewayClients, gateway: FakeGateway, timer: FakeTimer, provider: Provider
) -> None:
    gateway.script(provider).push(Disconnect())
    call = await review(clients, provider)
    assert call.ok and call.attempts == 2 and timer.sleeps == [0.5]


async def test_an_unreachable_gateway_is_a_connection_error(
    settings_for: Callable[..., Settings], timer: FakeTimer
) -> None:
    settings = settings_for(aig_gateway_url="http://127.0.0.1:9/v1/acc/gw", model_max_retries=1)
    async with open_clients(settings, timer) as clients:
        call = await review(clients, "openai")
    assert call.error == "connection error" and call.attempts == 2


# --------------------------------------------------------------------------- models and cost


async def test_cost_comes_from_usage_and_the_price_table(
    clients: GatewayClients, gateway: FakeGateway
) -> None:
    usage = FakeUsage(
        input_tokens=10_000,
        output_tokens=2_000,
        cached_input_tokens=4_000,
        cache_write_input_tokens=1_000,
    )
    gateway.anthropic.push(Reply(gateway.anthropic.review, usage))
    gateway.openai.push(Reply(gateway.openai.review, FakeUsage(10_000, 2_000, 4_000)))
    claude, gpt = await asyncio.gather(review(clients, "anthropic"), review(clients, "openai"))

    assert (claude.input_tokens, claude.output_tokens) == (10_000, 2_000)
    assert (claude.cached_input_tokens, claude.cache_write_input_tokens) == (4_000, 1_000)
    sonnet = PRICES["claude-sonnet-4-5"]
    expected = (
        5_000 * sonnet.input + 4_000 * 0.30 + 1_000 * 3.75 + 2_000 * sonnet.output
    ) / 1_000_000
    assert claude.cost_usd == pytest.approx(expected)
    assert claude.priced

    assert (gpt.input_tokens, gpt.cached_input_tokens, gpt.output_tokens) == (10_000, 4_000, 2_000)
    assert gpt.cost_usd == pytest.approx((6_000 * 0.25 + 4_000 * 0.025 + 2_000 * 2.0) / 1_000_000)


async def test_the_model_can_be_chosen_per_call(
    clients: GatewayClients, gateway: FakeGateway
) -> None:
    call = await review(clients, "anthropic", model="claude-haiku-4-5", max_tokens=1000)
    assert call.ok and call.model == "claude-haiku-4-5"
    (request,) = gateway.requests
    assert request.body["model"] == "claude-haiku-4-5"
    assert request.body["max_tokens"] == 1000
    assert call.cost_usd == pytest.approx(compute_cost("claude-haiku-4-5", call.usage).usd or -1.0)


async def test_an_unpriced_model_is_flagged_not_fatal(
    clients: GatewayClients, gateway: FakeGateway
) -> None:
    call = await review(clients, "openai", model="my-finetuned-model")
    assert call.ok
    assert call.cost_usd is None and not call.priced
    assert call.input_tokens > 0


async def test_temperature_only_for_models_that_take_it(
    clients: GatewayClients, gateway: FakeGateway
) -> None:
    await review(clients, "anthropic")
    await review(clients, "anthropic", model="claude-opus-4-7")
    await review(clients, "openai")
    await review(clients, "openai", model="gpt-4.1")
    sonnet, opus = gateway.requests_for("anthropic")
    gpt5, gpt41 = gateway.requests_for("openai")
    assert sonnet.body["temperature"] == 0.0
    assert "temperature" not in opus.body
    assert "temperature" not in gpt5.body
    assert gpt41.body["temperature"] == 0.0


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("claude-sonnet-4-5", True),
        ("claude-sonnet-4-5-20250929", True),
        ("claude-opus-4-1", True),
        ("claude-haiku-4-5", True),
        ("claude-sonnet-4-6", True),
        ("claude-3-5-haiku-20241022", True),
        ("claude-opus-4-7", False),
        ("claude-sonnet-5", False),
        ("claude-opus-5-5", False),
        ("some-proxy-alias", False),
    ],
)
def test_anthropic_temperature_rule(model: str, expected: bool) -> None:
    assert anthropic_accepts_temperature(model) is expected


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-5", False),
        ("gpt-5-mini", False),
        ("o3", False),
        ("gpt-5-chat-latest", True),
        ("gpt-4.1", True),
        ("gpt-4.1-mini", True),
    ],
)
def test_openai_temperature_rule(model: str, expected: bool) -> None:
    assert openai_accepts_temperature(model) is expected


@pytest.mark.parametrize(
    "model",
    [
        "claude-sonnet-4-5",
        "claude-opus-4-1",
        "claude-haiku-4-5",
        "gpt-5",
        "gpt-5-mini",
        "gpt-5-nano",
        "gpt-4.1",
        "gpt-4.1-mini",
    ],
)
def test_every_default_model_has_a_price(model: str) -> None:
    price = price_for(model)
    assert price is not None
    assert 0 < price.cached_input < price.input < price.output


def test_price_lookup_and_costs() -> None:
    assert price_for("claude-sonnet-4-5-20250929") == PRICES["claude-sonnet-4-5"]
    assert price_for("gpt-5-mini-2025-08-07") == PRICES["gpt-5-mini"]
    assert price_for("anthropic/claude-haiku-4-5") == PRICES["claude-haiku-4-5"]
    assert price_for("GPT-4.1") == PRICES["gpt-4.1"]
    assert price_for("gpt-4.1-mini") == PRICES["gpt-4.1-mini"]
    assert price_for("llama-3-70b") is None
    one_million = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    assert compute_cost("claude-opus-4-1", one_million).usd == pytest.approx(90.0)
    assert compute_cost("gpt-5", one_million).usd == pytest.approx(11.25)
    unknown = compute_cost("llama-3-70b", one_million)
    assert (unknown.usd, unknown.priced, unknown.unknown_model) == (None, False, True)
    assert max_cost("gpt-5-nano", input_tokens=1000, max_output_tokens=1000).usd == pytest.approx(
        (1000 * 0.05 + 1000 * 0.40) / 1_000_000
    )


# --------------------------------------------------------------------------- secrets


async def test_no_secret_appears_in_any_error(
    settings_for: Callable[..., Settings], gateway: FakeGateway, timer: FakeTimer
) -> None:
    leaky = f"bad key {ANTHROPIC_KEY} / {OPENAI_KEY} / token {TOKEN}"
    async with open_clients(settings_for(model_max_retries=0), timer, http_timeout=0.2) as clients:
        calls: list[ReviewCall] = []
        for provider in PROVIDERS:
            script = gateway.script(provider)
            script.push(
                HttpError(401, message=leaky),
                HttpError(500, message=leaky),
                HttpError(429, code="insufficient_quota", message=leaky),
                HttpError(400, body={"error": {"message": leaky}}),
                Delay(5),
                Disconnect(),
                Reply(invalid_review()),
                Reply(invalid_review()),
            )
            for _ in range(7):
                calls.append(await review(clients, provider))
    assert all(call.error for call in calls)
    assert {call.error for call in calls} >= {
        "http 401",
        "http 500",
        "spend limit (http 429)",
        "http 400",
        "timeout",
        "connection error",
        "invalid output after repair",
    }
    assert any(call.detail and "[redacted]" in call.detail for call in calls)
    for call in calls:
        assert_no_secrets(call.error, call.detail, repr(call))


def test_configuration_errors_carry_no_secrets(
    make_settings: SettingsFactory, clean_env: None
) -> None:
    settings = make_settings(
        cf_aig_token=TOKEN,
        anthropic_api_key=None,
        openai_api_key=None,
        anthropic_base_url=f"{TOKEN}/not-a-url",
    )
    with pytest.raises(GatewayConfigError) as caught:
        build_reviewers(settings)
    assert_no_secrets(str(caught.value), repr(caught.value))


async def test_the_fake_checks_anthropic_tool_pairing(gateway: FakeGateway) -> None:
    """The fake rejects what the real API rejects, so adapter bugs show up in tests."""
    async with httpx2.AsyncClient() as client:
        response = await client.post(
            gateway.anthropic_base_url + "/v1/messages",
            headers={"cf-aig-authorization": f"Bearer {TOKEN}", "anthropic-version": "2023-06-01"},
            json={
                "model": "claude-haiku-4-5",
                "max_tokens": 10,
                "messages": [
                    {"role": "user", "content": "hi"},
                    {
                        "role": "assistant",
                        "content": [{"type": "tool_use", "id": "t1", "name": "x", "input": {}}],
                    },
                    {"role": "user", "content": "no tool result"},
                ],
            },
        )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert response.headers["cf-aig-log-id"]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_2xx_body_in_no_known_format_is_an_invalid_response(
    clients: GatewayClients, gateway: FakeGateway, timer: FakeTimer, provider: Provider
) -> None:
    gateway.script(provider).push(HttpError(200, body=["not", "a", "message"]))
    call = await review(clients, provider)
    assert (call.review, call.error, call.attempts) == (None, "invalid response", 1)
    assert timer.sleeps == []


# --------------------------------------------------------------------------- the provider gate


class HeldSleep:
    """An injected sleep that records each wait and holds it until released (no real time)."""

    def __init__(self, clock: FakeTimer) -> None:
        self.timer = clock
        self.waits: list[float] = []
        self.release = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await self.release.wait()
        self.timer.now += seconds


async def call_once(reviewer: Any) -> ReviewCall:
    result: ReviewCall = await reviewer.review(
        system="You review code.", prompt="diff --git a/x b/x", metadata=METADATA
    )
    return result


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_calls_in_flight_stay_within_the_providers_limit(
    settings_for: Callable[..., Settings], gateway: FakeGateway, provider: Provider
) -> None:
    release = asyncio.Event()

    async def slow(request: RecordedRequest) -> Outcome:
        await release.wait()
        script = gateway.script(provider)
        return Reply(script.review, script.usage)

    gateway.script(provider).respond_with(slow)
    settings = settings_for(anthropic_max_concurrency=3, openai_max_concurrency=3)
    async with build_reviewers(settings, http_timeout=30) as clients:
        reviewer = clients.anthropic if provider == "anthropic" else clients.openai
        calls = [asyncio.create_task(call_once(reviewer)) for _ in range(8)]
        for _ in range(500):
            if len(gateway.requests_for(provider)) == 3:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # room for a fourth, were the bound not kept
        assert len(gateway.requests_for(provider)) == 3 and reviewer.gate.in_flight == 3
        release.set()
        results = await asyncio.gather(*calls)
    assert all(r.ok for r in results)
    assert gateway.max_in_flight(provider) == 3


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_rate_limit_pauses_every_call_of_the_provider(
    settings_for: Callable[..., Settings],
    gateway: FakeGateway,
    timer: FakeTimer,
    provider: Provider,
) -> None:
    gateway.script(provider).push(HttpError(429, retry_after=5))
    held = HeldSleep(timer)
    clients = build_reviewers(
        settings_for(), http_timeout=30, sleep=held, clock=timer.clock, jitter=lambda: 1.0
    )
    async with clients:
        reviewer = clients.anthropic if provider == "anthropic" else clients.openai
        first = asyncio.create_task(call_once(reviewer))
        for _ in range(500):
            if held.waits:
                break
            await asyncio.sleep(0.01)
        assert held.waits == [5.0] and reviewer.gate.paused_for == 5.0
        # Calls that start during the pause wait it out before sending anything.
        others = [asyncio.create_task(call_once(reviewer)) for _ in range(3)]
        await asyncio.sleep(0.2)
        assert len(gateway.requests_for(provider)) == 1
        assert held.waits == [5.0] * 4
        # The other provider is not held.
        other: Provider = "openai" if provider == "anthropic" else "anthropic"
        assert (await call_once(clients.by_provider(other))).ok
        held.release.set()
        results = await asyncio.gather(first, *others)
    assert all(r.ok for r in results)
    assert [r.attempts for r in results] == [2, 1, 1, 1]
    assert len(gateway.requests_for(provider)) == 5
    assert reviewer.gate.pauses == 1


async def test_a_gate_needs_room_for_one_call() -> None:
    with pytest.raises(ValueError, match="at least one"):
        ProviderGate("anthropic", 0)
