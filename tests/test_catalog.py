"""The catalog is the vendor's page, row by row, and loads like data."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from django.core.management import CommandError, call_command

from ports.loader import CATALOG_DIR
from ports.models import CatalogVersion, Requirement

SEED = CATALOG_DIR / "forcepoint-email-security-ports.txt"
SHARED_SEED = Path(__file__).resolve().parents[2] / "shared" / "seed" / SEED.name
CATALOG_FILE = CATALOG_DIR / "forcepoint-email-security-2026.1.yaml"
TABLES = ["appliance", "dlp_outbound", "off_appliance"]


def page_tables() -> tuple[str, list[list[dict]], list[str]]:
    """Read the vendor's text page independently of the catalog: (warning, rows per table, footnotes)."""
    text = SEED.read_text(encoding="utf-8")
    warning = re.search(r"^Note: (.*)$(\n^[^|\n]*$)?", text, re.MULTILINE)
    warning_text = " ".join(part.strip() for part in warning.group(0).removeprefix("Note: ").splitlines())
    tables, footnotes = [], []
    for block in text.split("Interface | Port | Direction | Description |")[1:]:
        body = block.split("---|---|---|---|", 1)[1]
        lines = [line for line in body.strip().splitlines() if "|" in line]
        # Stop at the next table's introduction (a line without cells).
        table_lines = []
        for line in body.strip().splitlines():
            if "|" not in line:
                break
            table_lines.append(line)
        assert table_lines == lines[: len(table_lines)]
        cells = [cell.strip() for cell in " ".join(table_lines).split("|")][:-1]
        if len(cells) % 4 == 1:
            footnotes.append(cells.pop())
        rows = [
            dict(zip(["interface", "port", "direction", "description"], cells[i : i + 4], strict=False))
            for i in range(0, len(cells), 4)
        ]
        tables.append(rows)
    return warning_text, tables, footnotes


EN_DASH = "\N{EN DASH}"  # the page writes its ranges with an en dash


def page_ports(port_text: str, footnotes: list[str]) -> set[int]:
    """Every port a row of the page names, ranges and footnoted ranges included."""
    text = port_text.replace("*", "")
    if EN_DASH in text:
        start, end = (int(p) for p in text.split(EN_DASH))
        return set(range(start, end + 1))
    ports = {int(p) for p in text.split()}
    if port_text.endswith("*"):
        whole = next(f for f in footnotes if f.startswith("The port range"))
        start, end = (int(p) for p in re.search(rf"(\d+){EN_DASH}(\d+)", whole).groups())
        assert start in ports
        return set(range(start, end + 1))
    return ports


def test_page_parses_into_three_tables_of_known_size():
    _, tables, footnotes = page_tables()
    assert [len(rows) for rows in tables] == [6, 5, 9]
    assert len(footnotes) == 2


def test_repository_copy_of_the_seed_is_the_vendor_page():
    if not SHARED_SEED.exists():
        pytest.skip("shared/seed is not beside this checkout")
    assert SEED.read_bytes() == SHARED_SEED.read_bytes()


def test_catalog_matches_the_seed_row_by_row(catalog):
    warning, tables, footnotes = page_tables()
    assert catalog.warning == warning
    requirements = list(catalog.requirements.all())
    for table, rows in zip(TABLES, tables, strict=False):
        for number, row in enumerate(rows, start=1):
            matching = [r for r in requirements if r.table == table and r.row == number]
            assert matching, f"{table} row {number} ({row}) is missing"
            for requirement in matching:
                assert requirement.interface_text == row["interface"]
                assert requirement.port_text == row["port"]
                assert requirement.direction == row["direction"]
                assert requirement.description == row["description"]
            covered = set().union(*(range(r.port_start, r.port_end + 1) for r in matching))
            assert covered == page_ports(row["port"], footnotes), requirement.uid
    page_rows = {(table, n) for table, rows in zip(TABLES, tables, strict=False) for n in range(1, len(rows) + 1)}
    assert {(r.table, r.row) for r in requirements} == page_rows


def test_footnotes_belong_to_their_rows(catalog):
    _, _, footnotes = page_tables()
    whole = catalog.requirements.get(uid="fes.appliance.17700-17714-tcp")
    assert (whole.port_start, whole.port_end) == (17700, 17714)
    assert whole.whole_range_required and whole.footnotes[0]["text"] == footnotes[0]
    moving = [r for r in catalog.requirements.all() if r.base_configurable]
    assert sorted(r.description for r in moving) == ["Fingerprint repository", "Fingerprint status", "Message analysis"]
    assert {(r.port_start, r.port_end) for r in moving} == {(17500, 17515)}
    assert all(r.footnotes[0]["text"] == footnotes[1] for r in moving)
    assert catalog.configurable_base_default == 17500
    unmarked = [r for r in catalog.requirements.all() if "*" not in r.port_text]
    assert all(not r.footnotes for r in unmarked)


def test_protocols_interfaces_and_roles_follow_the_brief(catalog):
    by_port = {}
    for r in catalog.requirements.all():
        by_port.setdefault((r.port_start, r.port_end), set()).add(r.protocol)
        assert r.protocol_inferred
        if r.table == "appliance":
            assert r.listener == "appliance" and r.initiator != "appliance"
        else:
            assert r.initiator == "appliance" and r.listener != "appliance"
    assert by_port[(53, 53)] == {"tcp", "udp"}
    assert by_port[(1434, 1434)] == {"udp"}
    assert by_port[(162, 162)] == {"udp"}
    assert by_port[(1433, 1433)] == by_port[(389, 389)] == by_port[(636, 636)] == {"tcp"}
    other = {ports: protocols for ports, protocols in by_port.items() if ports[0] not in (53, 162, 1434)}
    assert all(protocols == {"tcp"} for protocols in other.values())
    ssl_proxy = catalog.requirements.get(uid="fes.appliance.6671-tcp")
    assert ssl_proxy.interfaces == ["C", "P1", "P2"] and ssl_proxy.recommended_interface == "C"
    assert catalog.requirements.get(uid="fes.off-appliance.162-udp").interfaces == ["C"]
    assert catalog.requirements.get(uid="fes.appliance.25-tcp").interfaces == ["P1", "P2"]


def test_loading_twice_changes_nothing(catalog, capsys):
    before = list(Requirement.objects.values_list("pk", "uid").order_by("pk"))
    call_command("load_catalog")
    assert "unchanged" in capsys.readouterr().out
    assert CatalogVersion.objects.count() == 1
    assert list(Requirement.objects.values_list("pk", "uid").order_by("pk")) == before


def write_catalog(tmp_path: Path, name: str, change) -> Path:
    document = yaml.safe_load(CATALOG_FILE.read_text(encoding="utf-8"))
    change(document)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d["requirements"][1].update(port_end=1),
            "requirement 2 (fes.appliance.9449-tcp.peer-appliances): port_end",
        ),
        (
            lambda d: d["requirements"][4].update(port_start=70000),
            "requirement 5 (fes.appliance.17700-17714-tcp): port_start",
        ),
        (lambda d: d["requirements"][2].update(protocol="sctp"), "requirement 3 (fes.appliance.6671-tcp): protocol"),
        (
            lambda d: d["requirements"][0].update(interfaces=["C", "P3"]),
            "requirement 1 (fes.appliance.9449-tcp.end-users): interfaces.1",
        ),
        (lambda d: d["requirements"][3].pop("description"), "requirement 4 (fes.appliance.6643-tcp): description"),
        (
            lambda d: d["requirements"][6].update(id=d["requirements"][5]["id"]),
            "requirement 7 (fes.appliance.25-tcp): id",
        ),
        (
            lambda d: d["requirements"][7].update(initiator="ldap"),
            "requirement 8 (fes.dlp.17500-17515-tcp.fingerprint-status): initiator",
        ),
        (lambda d: d.pop("version"), "version"),
    ],
)
def test_a_malformed_file_names_record_and_field_and_loads_nothing(db, tmp_path, change, message):
    path = write_catalog(tmp_path, "bad.yaml", lambda d: (d.update(version="2099.1"), change(d)))
    with pytest.raises(CommandError) as failure:
        call_command("load_catalog", str(path))
    assert message in str(failure.value)
    assert not CatalogVersion.objects.exists() and not Requirement.objects.exists()


def test_a_bad_file_among_several_loads_none_of_them(db, tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("product: [unclosed", encoding="utf-8")
    with pytest.raises(CommandError, match=r"broken\.yaml: cannot be read"):
        call_command("load_catalog", str(CATALOG_FILE), str(broken))
    assert not CatalogVersion.objects.exists()


def test_a_version_cannot_be_loaded_again_with_other_content(catalog, tmp_path):
    path = write_catalog(tmp_path, "edited.yaml", lambda d: d["requirements"][0].update(description="Edited"))
    with pytest.raises(CommandError, match="already loaded with different content"):
        call_command("load_catalog", str(path))
    assert catalog.requirements.get(uid="fes.appliance.9449-tcp.end-users").description.startswith("Personal")


def test_a_new_vendor_revision_loads_without_code_and_becomes_current(catalog, tmp_path):
    def revise(document: dict) -> None:
        document["version"] = "2027.1"
        document["requirements"] = [r for r in document["requirements"] if r["id"] != "fes.off-appliance.56992-tcp"]

    call_command("load_catalog", str(write_catalog(tmp_path, "next.yaml", revise)), verbosity=0)
    current = CatalogVersion.objects.current().get()
    assert current.version == "2027.1"
    assert current.requirements.count() == catalog.requirements.count() - 1
    assert catalog.requirements.filter(uid="fes.off-appliance.56992-tcp").exists()
