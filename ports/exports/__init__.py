"""A deployment's rules handed out, in every format.

rule_set holds what every format reads (the scope, the flows and their numbers, the fingerprint);
params what an export is asked for; the formats are modules of their own: sheets (CSV, XLSX),
firewall (the syntaxes, declared once in firewall.SYNTAXES) and pdf (the change request). This
module only hands their common names on.
"""

from .params import ExportParams, ExportRequest
from .rule_set import Flow, RuleSet, Scope

__all__ = ["ExportParams", "ExportRequest", "Flow", "RuleSet", "Scope"]
