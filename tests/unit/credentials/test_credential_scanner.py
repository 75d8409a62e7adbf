import pytest

from aibox.credentials.scanner import scan_diff, scan_line

DIFF = """diff --git a/src/app.py b/src/app.py
--- a/src/app.py
+++ b/src/app.py
@@ -10,0 +11,3 @@ def f():
+x = 1
+TOKEN = "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB"
+y = 2
diff --git a/notes.txt b/notes.txt
new file mode 100644
--- /dev/null
+++ b/notes.txt
@@ -0,0 +1,2 @@
+the sandbox token is issued-abcdef123456 here
+nothing
"""


def test_scan_diff_finds_kind_path_and_line() -> None:
    findings = scan_diff(DIFF, ["issued-abcdef123456"])
    assert [f.describe() for f in findings] == [
        "src/app.py:12: GitHub token",
        "notes.txt:1: credential issued by aibox",
    ]


def test_scan_diff_ignores_removed_lines() -> None:
    diff = "+++ b/a\n@@ -1 +1 @@\n-AKIAABCDEFGHIJKLMNOP\n+clean\n"
    assert scan_diff(diff, []) == []


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("ghp_" + "a" * 36, "GitHub token"),  # classic PAT
        ("github_pat_" + "A" * 30, "GitHub token"),  # fine-grained PAT
        ("glpat-" + "x" * 20, "GitLab token"),  # GitLab
        ("key=sk-ant-api03-" + "b" * 40, "Anthropic API key"),  # Anthropic
        ("sk-proj-" + "c" * 40, "OpenAI API key"),  # OpenAI project key
        ("AKIAABCDEFGHIJKLMNOP", "AWS access key id"),  # AWS
        ("xoxb-1234567890-abc", "Slack token"),  # Slack
        ("hvs." + "d" * 24, "Vault token"),  # Vault service token
        ("s." + "e" * 24, "Vault token"),  # OpenBao service token
        ("-----BEGIN OPENSSH PRIVATE KEY-----", "private key"),  # SSH key
        ("-----BEGIN PRIVATE KEY-----", "private key"),  # PKCS#8
        ("the word sk-short", None),  # too short
        ("this.is.normal.code()", None),  # ordinary code
    ],
)
def test_scan_line_formats(text: str, kind: str | None) -> None:
    assert scan_line(text, []) == kind


def test_short_issued_values_are_ignored() -> None:
    assert scan_diff("+++ b/a\n@@ -0,0 +1 @@\n+abc\n", ["abc"]) == []
