"""Pathology report -> finding sentences -> report prompts; LLM prompt request/parse."""

from __future__ import annotations

import pytest

from pathgen.errors import BadOutput
from pathgen.select.llm_prompts import organ_prompts_request, parse_organ_prompts
from pathgen.select.report import report_prompts, report_sentences

REPORT = """SURGICAL PATHOLOGY REPORT
Patient: DOE, JANE   MRN: 123456   DOB: 01/02/1960
Accession #: S23-004512
Date of procedure: 03/14/2023

SPECIMEN: Left breast, core needle biopsy, 12 o'clock.
CLINICAL HISTORY: Palpable mass in the left breast on mammography.

GROSS DESCRIPTION:
Received in formalin are three cores of tan tissue measuring 1.2 cm in aggregate.

MICROSCOPIC DESCRIPTION:
Sections show invasive ductal carcinoma, grade 2. Tumor cells form irregular nests within a \
desmoplastic stroma; focal necrosis is present.
- Ductal carcinoma in situ, cribriform type, is also identified.
Lymphovascular invasion: not identified.
* Calcifications

DIAGNOSIS:
1. Invasive ductal carcinoma, Nottingham grade 2 (tubules 3, nuclei 2, mitoses 1).
2. DCIS, cribriform type.
3. DCIS, cribriform type.

Electronically signed by John Smith, M.D. on 03/16/2023
"""


def test_report_findings_become_sentences():
    assert report_sentences(REPORT) == [
        "Sections show invasive ductal carcinoma, grade 2.",
        "Tumor cells form irregular nests within a desmoplastic stroma",
        "Focal necrosis is present.",
        "Ductal carcinoma in situ, cribriform type, is also identified.",
        "Lymphovascular invasion: not identified.",
        "Invasive ductal carcinoma, Nottingham grade 2 (tubules 3, nuclei 2, mitoses 1).",
        "DCIS, cribriform type.",
    ]


def test_report_prompts_have_ids_and_source():
    prompts = report_prompts(REPORT, slide_key="case-7")
    assert [p.id for p in prompts[:2]] == ["report:case-7:0", "report:case-7:1"]
    assert {p.source for p in prompts} == {"report"}
    assert prompts[0].text == "Sections show invasive ductal carcinoma, grade 2."


def test_report_without_headers_and_decimals():
    text = "Tumour size 2.5 cm. Margins are free of tumour; closest margin 0.3 cm.\n\nOK"
    assert report_sentences(text) == [
        "Tumour size 2.5 cm.",
        "Margins are free of tumour",
        "Closest margin 0.3 cm.",
    ]
    assert report_sentences("") == []


def test_llm_request_is_pure_and_names_the_organ():
    req = organ_prompts_request("kidney", n=12, model="gpt-x")
    assert req.model == "gpt-x" and req.meta["organ"] == "kidney"
    assert "12" in req.messages[1].text and "kidney" in req.messages[1].text
    assert [m.role for m in req.messages] == ["system", "user"]


def test_llm_answer_parsing_is_tolerant():
    answer = """Here are the prompts:
1. Clear cell renal cell carcinoma – nests of cells with clear cytoplasm and delicate vasculature
2) **Normal glomerulus**: capillary tuft within Bowman's capsule surrounded by urinary space
- Papillary RCC - papillae with foamy macrophages in fibrovascular cores
* Oncocytoma — nests of eosinophilic cells in an oedematous, hypocellular stroma
Chronic pyelonephritis with thyroidization of tubules and interstitial fibrosis
Short: too few
- Papillary RCC - papillae with foamy macrophages in fibrovascular cores
"""
    prompts = parse_organ_prompts(answer, organ="Kidney")
    assert [p.feature for p in prompts] == [
        "Clear cell renal cell carcinoma",
        "Normal glomerulus",
        "Papillary RCC",
        "Oncocytoma",
        None,
    ]
    assert prompts[1].text.startswith("Normal glomerulus – capillary tuft")
    assert {p.source for p in prompts} == {"llm"} and {p.organ for p in prompts} == {"kidney"}
    assert len({p.id for p in prompts}) == len(prompts)
    assert len(parse_organ_prompts(answer, organ="kidney", strict=True)) == 4


def test_llm_answer_without_prompts_is_bad_output():
    with pytest.raises(BadOutput) as err:
        parse_organ_prompts("I'm sorry, I cannot help with that.", organ="kidney")
    assert err.value.raw == "I'm sorry, I cannot help with that."
