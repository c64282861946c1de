"""Risk tiers: built-in rules, precedence, renames, and the table the check run shows."""

from __future__ import annotations

import pytest

from app.policy.risk import (
    BUILTIN_RULES,
    PathChange,
    RuleSource,
    Tier,
    classify_path,
    classify_paths,
    render_risk_table,
)
from app.repo_config import RiskRule


def rule(tier: Tier, *paths: str) -> RiskRule:
    return RiskRule(paths=paths, tier=tier)


def test_tiers_are_ordered_by_risk_not_alphabet() -> None:
    assert Tier.LOW < Tier.MEDIUM < Tier.HIGH < Tier.CRITICAL
    assert Tier.CRITICAL > Tier.LOW  # as strings, "critical" < "low"
    assert Tier.HIGH >= Tier.HIGH
    assert Tier.MEDIUM <= Tier.HIGH
    assert max([Tier.LOW, Tier.CRITICAL, Tier.MEDIUM]) is Tier.CRITICAL
    assert sorted([Tier.HIGH, Tier.LOW, Tier.CRITICAL, Tier.MEDIUM]) == list(Tier)
    assert Tier.highest([]) is Tier.LOW
    assert Tier("high") is Tier.HIGH


@pytest.mark.parametrize(
    ("path", "tier", "glob"),
    [
        # critical
        (".github/workflows/ci.yml", Tier.CRITICAL, ".github/workflows/**"),
        (".github/actions/setup/action.yml", Tier.CRITICAL, ".github/actions/**"),
        ("CODEOWNERS", Tier.CRITICAL, "/CODEOWNERS"),
        (".github/CODEOWNERS", Tier.CRITICAL, ".github/CODEOWNERS"),
        ("docs/CODEOWNERS", Tier.CRITICAL, "docs/CODEOWNERS"),
        ("certs/server.pem", Tier.CRITICAL, "**/*.pem"),
        ("id.key", Tier.CRITICAL, "**/*.key"),
        (".env", Tier.CRITICAL, "**/.env*"),
        ("app/.env.production", Tier.CRITICAL, "**/.env*"),
        ("app/client_secret.json", Tier.CRITICAL, "**/*secret*"),
        ("config/secrets/db.yaml", Tier.CRITICAL, "**/*secret*"),
        ("modules/vpc/main.tf", Tier.CRITICAL, "**/*.tf"),
        ("infra/network.py", Tier.CRITICAL, "infra/**"),
        ("deploy/prod.sh", Tier.CRITICAL, "deploy/**"),
        ("k8s/deployment.yaml", Tier.CRITICAL, "k8s/**"),
        ("helm/values.yaml", Tier.CRITICAL, "helm/**"),
        # high
        ("src/auth/login.py", Tier.HIGH, "**/auth/**"),
        ("auth/tokens.go", Tier.HIGH, "**/auth/**"),
        ("lib/security/csp.ts", Tier.HIGH, "**/security/**"),
        ("pkg/crypto/aes.go", Tier.HIGH, "**/crypto/**"),
        ("app/migrations/0001_initial.py", Tier.HIGH, "**/migrations/**"),
        ("schema/tables.sql", Tier.HIGH, "**/*.sql"),
        ("requirements-dev.txt", Tier.HIGH, "*requirements*.txt"),
        ("web/package.json", Tier.HIGH, "package.json"),
        ("package-lock.json", Tier.HIGH, "package-lock.json"),
        ("yarn.lock", Tier.HIGH, "yarn.lock"),
        ("pnpm-lock.yaml", Tier.HIGH, "pnpm-lock.yaml"),
        ("poetry.lock", Tier.HIGH, "poetry.lock"),
        ("Pipfile.lock", Tier.HIGH, "Pipfile*"),
        ("go.mod", Tier.HIGH, "go.mod"),
        ("go.sum", Tier.HIGH, "go.sum"),
        ("crates/x/Cargo.toml", Tier.HIGH, "Cargo.toml"),
        ("Cargo.lock", Tier.HIGH, "Cargo.lock"),
        ("Gemfile.lock", Tier.HIGH, "Gemfile*"),
        ("composer.json", Tier.HIGH, "composer.*"),
        ("uv.lock", Tier.HIGH, "uv.lock"),
        ("Dockerfile", Tier.HIGH, "Dockerfile*"),
        ("images/Dockerfile.prod", Tier.HIGH, "Dockerfile*"),
        ("Makefile", Tier.HIGH, "Makefile"),
        ("setup.py", Tier.HIGH, "setup.py"),
        ("setup.cfg", Tier.HIGH, "setup.cfg"),
        ("pyproject.toml", Tier.HIGH, "pyproject.toml"),
        ("app/build.gradle", Tier.HIGH, "*.gradle"),
        ("pom.xml", Tier.HIGH, "pom.xml"),
        ("api/permissions/views.py", Tier.HIGH, "**/permissions/**"),
        ("core/acl/check.py", Tier.HIGH, "**/acl/**"),
        ("core/rbac/roles.py", Tier.HIGH, "**/rbac/**"),
        ("app/user_permission.py", Tier.HIGH, "**/*permission*"),
        # low
        ("docs/guide/intro.txt", Tier.LOW, "docs/**"),
        ("README.md", Tier.LOW, "**/*.md"),
        ("pkg/notes.rst", Tier.LOW, "**/*.rst"),
        ("tests/conftest.py", Tier.LOW, "tests/**"),
        ("src/pkg/test_util.py", Tier.LOW, "**/test_*.py"),
        ("pkg/server_test.go", Tier.LOW, "**/*_test.go"),
        ("web/button.spec.tsx", Tier.LOW, "**/*.spec.*"),
        ("web/button.test.js", Tier.LOW, "**/*.test.*"),
    ],
)
def test_builtin_rules(path: str, tier: Tier, glob: str) -> None:
    match = classify_path(path)
    assert (match.tier, match.glob, match.source) == (tier, glob, RuleSource.BUILTIN)
    assert match.name == path


@pytest.mark.parametrize(
    "path",
    ["src/app.py", "lib/CODEOWNERS", "infrastructure.md.py", "src/docs/x.py", "main.go"],
)
def test_anything_else_is_medium(path: str) -> None:
    match = classify_path(path)
    assert (match.tier, match.glob, match.source) == (Tier.MEDIUM, None, RuleSource.FALLBACK)


def test_built_in_globs_are_each_listed_once_per_tier() -> None:
    for globs in BUILTIN_RULES.values():
        assert len(globs) == len(set(globs))
    assert Tier.MEDIUM not in BUILTIN_RULES


@pytest.mark.parametrize(
    ("path", "tier", "glob"),
    [
        ("docs/auth/login.md", Tier.HIGH, "**/auth/**"),  # high beats low
        ("tests/test_secrets.py", Tier.CRITICAL, "**/*secret*"),  # critical beats low
        ("docs/CODEOWNERS", Tier.CRITICAL, "docs/CODEOWNERS"),
        ("infra/README.md", Tier.CRITICAL, "infra/**"),
        ("src/auth/migrations/1.sql", Tier.HIGH, "**/*.sql"),
    ],
)
def test_the_highest_built_in_tier_wins(path: str, tier: Tier, glob: str) -> None:
    match = classify_path(path)
    assert (match.tier, match.glob) == (tier, glob)


def test_config_rules_come_first_and_the_first_match_wins() -> None:
    rules = [
        rule(Tier.LOW, "src/generated/**"),
        rule(Tier.CRITICAL, "src/**"),
        rule(Tier.HIGH, "src/generated/x.py"),  # never reached: the first rule matched
    ]
    generated = classify_path("src/generated/x.py", rules)
    assert (generated.tier, generated.glob, generated.source) == (
        Tier.LOW,
        "src/generated/**",
        RuleSource.CONFIG,
    )
    other = classify_path("src/app.py", rules)
    assert (other.tier, other.glob, other.source) == (Tier.CRITICAL, "src/**", RuleSource.CONFIG)
    # A path no config rule matches falls through to the built-in rules.
    assert classify_path("README.md", rules).source is RuleSource.BUILTIN


def test_config_rules_may_lower_a_built_in_tier() -> None:
    rules = [rule(Tier.MEDIUM, "package.json")]
    assert classify_path("package.json", rules).tier is Tier.MEDIUM


def test_the_bots_own_config_is_pinned_critical() -> None:
    rules = [rule(Tier.LOW, "**"), rule(Tier.LOW, ".github/aigateway.yml")]
    match = classify_path(".github/aigateway.yml", rules)
    assert (match.tier, match.source) == (Tier.CRITICAL, RuleSource.PINNED)
    assert classify_path(".github/workflows/ci.yml", rules).tier is Tier.LOW


def test_a_config_rule_can_carve_out_with_negation() -> None:
    rules = [rule(Tier.CRITICAL, "payments/**", "!payments/docs/**")]
    assert classify_path("payments/charge.py", rules).tier is Tier.CRITICAL
    carved = classify_path("payments/docs/api.md", rules)
    assert (carved.tier, carved.source) == (Tier.LOW, RuleSource.BUILTIN)


def test_a_rule_reports_the_glob_that_matched() -> None:
    rules = [rule(Tier.HIGH, "a/**", "*.proto")]
    assert classify_path("api/v1/service.proto", rules).glob == "*.proto"


def test_the_pr_tier_is_the_highest_and_an_empty_pr_is_low() -> None:
    assert classify_paths([]).tier is Tier.LOW
    report = classify_paths(["README.md", "src/app.py", "src/auth/token.py"])
    assert report.tier is Tier.HIGH
    assert [p.tier for p in report.paths] == [Tier.LOW, Tier.MEDIUM, Tier.HIGH]
    assert classify_paths(["README.md", "docs/a.md"]).tier is Tier.LOW


def test_a_rename_counts_both_names() -> None:
    out_of_infra = PathChange("src/net.py", previous_path="infra/net.py")
    into_auth = PathChange("src/auth/x.py", previous_path="src/x.py")
    report = classify_paths([out_of_infra, into_auth])
    first, second = report.paths
    assert (first.tier, first.match.glob, first.match.name) == (
        Tier.CRITICAL,
        "infra/**",
        "infra/net.py",
    )
    assert (second.tier, second.match.name) == (Tier.HIGH, "src/auth/x.py")
    assert report.tier is Tier.CRITICAL
    assert report.driving_paths == ("src/net.py", "infra/net.py")


def test_driving_paths_are_the_paths_at_the_pr_tier() -> None:
    report = classify_paths(["README.md", "src/auth/a.py", "lib/crypto/b.py", "src/c.py"])
    assert report.driving_paths == ("src/auth/a.py", "lib/crypto/b.py")
    assert report.count(Tier.HIGH) == 2
    assert report.count(Tier.CRITICAL) == 0


def test_leading_slashes_do_not_defeat_anchored_rules() -> None:
    assert classify_path("/infra/x.py").tier is Tier.CRITICAL


def test_compiled_rules_are_reused_for_equal_rule_sets() -> None:
    from app.policy import risk

    before = risk._config_rules.cache_info()
    rules_a = [rule(Tier.HIGH, "svc/**")]
    rules_b = [rule(Tier.HIGH, "svc/**")]  # equal content, different objects
    classify_paths(["svc/a.py"], rules_a)
    classify_paths([f"svc/{i}.py" for i in range(100)], rules_b)
    after = risk._config_rules.cache_info()
    assert after.misses - before.misses <= 1
    assert after.hits - before.hits >= 1


def test_render_risk_table_shows_path_tier_and_rule_riskiest_first() -> None:
    report = classify_paths(
        ["README.md", PathChange("src/x.py", "infra/x.py"), "src/app.py"],
        [rule(Tier.MEDIUM, "src/app.py")],
    )
    table = render_risk_table(report)
    lines = table.splitlines()
    assert lines[0] == "**Risk tier: critical** (3 paths: 1 critical, 1 medium, 1 low)"
    assert lines[2] == "| path | tier | rule |"
    assert lines[4] == "| `infra/x.py` → `src/x.py` | critical | `infra/**` (built-in) |"
    assert lines[5] == "| `src/app.py` | medium | `src/app.py` (config) |"
    assert lines[6] == "| `README.md` | low | `**/*.md` (built-in) |"
    assert table.endswith("\n")


def test_render_risk_table_truncates_with_a_count() -> None:
    report = classify_paths([f"src/m{i}.py" for i in range(10)] + ["infra/a.py"])
    table = render_risk_table(report, limit=3)
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert len(rows) == 3
    assert rows[0].startswith("| `infra/a.py` | critical")
    assert "… and 8 more paths not shown." in table
    assert "not shown" not in render_risk_table(report, limit=11)
    assert "… and 1 more path not shown." in render_risk_table(report, limit=10)


def test_render_risk_table_escapes_markdown() -> None:
    table = render_risk_table(classify_paths(["a|b.py", "we`ird.py"]))
    assert "`a\\|b.py`" in table
    assert "<code>we&#96;ird.py</code>" in table
    assert "no rule matched (default: medium)" in table


def test_render_risk_table_for_an_empty_pr() -> None:
    assert render_risk_table(classify_paths([])) == "**Risk tier: low** (0 paths)\n"


def test_many_paths_classify_quickly_enough_to_not_matter() -> None:
    # Not a timing assertion (see DESIGN.md): just that 3,000 paths go through without trouble.
    paths = [f"pkg{i % 40}/mod{i}.py" for i in range(3000)]
    report = classify_paths(paths, [rule(Tier.HIGH, "pkg7/**")])
    assert report.tier is Tier.HIGH
    assert report.count(Tier.HIGH) == 75


@pytest.mark.parametrize(
    "path",
    [
        "requirements.txt",
        "requirements-dev.txt",
        "requirements/base.txt",
        "services/api/requirements/prod.txt",
        "requirements.in",
        "dev-requirements.txt",
        "test-requirements.in",
        "requirements/dev.in",
        "constraints.txt",
        "constraints.in",
        "environment.yaml",
        "go.work",
        "setup.cfg",
        "uv.lock",
        "pnpm-lock.yaml",
        "poetry.lock",
        "Gemfile",
        "Pipfile",
        "Pipfile.lock",
        "pyproject.toml",
        "setup.py",
        "package.json",
        "package-lock.json",
        "npm-shrinkwrap.json",
        "yarn.lock",
        "bun.lockb",
        "go.mod",
        "go.sum",
        "Cargo.toml",
        "Cargo.lock",
        "Gemfile.lock",
        "environment.yml",
        "web/package.json",
    ],
)
def test_dependency_manifests_and_pins_are_high_risk(path: str) -> None:
    assert classify_path(path).tier is Tier.HIGH
