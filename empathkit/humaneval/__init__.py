"""Human evaluation kit: blinded, randomised annotation sheets and their aggregation.

- :func:`export_sheets` — sample examples stratified by emotion, then write per-annotator CSV sheets (A/B
  comparisons or Likert ratings), a static HTML form that fills the same CSV in a browser, and a hidden key file
  mapping blinded items back to systems.
- :func:`aggregate` — read the filled sheets + key: win / tie / lose per system pair and aspect (per-item majority
  vote; sign test on wins vs losses), Likert means ± SD, and Fleiss' kappa across annotators (statsmodels).
"""

from empathkit.humaneval.aggregate import aggregate, fleiss_kappa, read_sheet
from empathkit.humaneval.sheets import ASPECTS, export_sheets, stratified_sample

__all__ = ["export_sheets", "stratified_sample", "aggregate", "fleiss_kappa", "read_sheet", "ASPECTS"]
