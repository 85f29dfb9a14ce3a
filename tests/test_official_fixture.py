"""Conformance: our model reproduces the official TC-MoA code's own outputs (random tiny weights)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tcmoa.model.checkpoint import load_official

from .conftest import OFFICIAL_FIXTURE, fixture_file, official_cases

CASES = official_cases()


@pytest.fixture(scope="module")
def model():
    weights = np.load(fixture_file(OFFICIAL_FIXTURE, "official_tiny_weights.npz"))
    # The fixture's weights use the official key names; loading maps them to ours.
    return load_official({k: torch.from_numpy(weights[k]) for k in weights.files}).eval()


def run_case(model, path):
    case = dict(np.load(path))
    with torch.no_grad():
        out = model(torch.from_numpy(case["input_A"]), torch.from_numpy(case["input_B"]), int(case["task_index"]))
    return case, out


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_prediction_and_fused_image(model, path):
    case, out = run_case(model, path)
    np.testing.assert_allclose(out.pred.numpy(), case["pred"], atol=5e-6, rtol=0)
    np.testing.assert_allclose(out.fused.numpy(), case["fused"], atol=1e-6, rtol=0)
    if "encoder_out_A" in case:
        with torch.no_grad():
            enc_a, enc_b = model.encode(torch.from_numpy(case["input_A"]), torch.from_numpy(case["input_B"]),
                                        int(case["task_index"]))
        np.testing.assert_allclose(enc_a.numpy(), case["encoder_out_A"], atol=5e-6, rtol=0)
        np.testing.assert_allclose(enc_b.numpy(), case["encoder_out_B"], atol=5e-6, rtol=0)


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_prompts_routing_and_aux_losses(model, path):
    case, out = run_case(model, path)
    for part, traces in (("enc", out.encoder_traces), ("dec", out.decoder_traces)):
        assert len(traces) == len(case[f"{part}_prompt_A"]), f"{part}: wrong number of TC-MoA modules"
        for j, trace in enumerate(traces):
            np.testing.assert_allclose(trace.prompt_a.numpy(), case[f"{part}_prompt_A"][j], atol=1e-6, rtol=0)
            np.testing.assert_allclose(trace.prompt_b.numpy(), case[f"{part}_prompt_B"][j], atol=1e-6, rtol=0)
            np.testing.assert_allclose(trace.router_logits.numpy(), case[f"{part}_router_logits"][j], atol=5e-5, rtol=0)
            np.testing.assert_allclose(trace.gates.numpy(), case[f"{part}_gates"][j], atol=1e-5, rtol=0)
            # The exact routing pattern: which two experts every token uses.
            np.testing.assert_array_equal(trace.gates.numpy() > 0, case[f"{part}_gates"][j] > 0)
            np.testing.assert_allclose(float(trace.aux_loss), case[f"{part}_aux_loss"][j], atol=1e-8, rtol=0)


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
@pytest.mark.parametrize("epoch", [0, 2])
def test_loss_terms(model, path, epoch):
    from tcmoa.train.losses import task_loss
    from tcmoa.model.network import denormalize

    case, out = run_case(model, path)
    a, b = (denormalize(torch.from_numpy(case[k])) for k in ("input_A", "input_B"))
    terms = task_loss(int(case["task_index"]), out.fused, a, b, out.prompts("encoder"),
                      out.prompts("decoder"), out.aux_loss, epoch=epoch)
    expected = {k.split("__", 1)[1]: float(v) for k, v in case.items() if k.startswith(f"loss_epoch{epoch}__")}
    assert expected, f"{path.name} has no epoch-{epoch} losses"
    for name, value in expected.items():
        assert name in terms, f"loss term {name} missing"
        np.testing.assert_allclose(float(terms[name]), value, rtol=1e-4, err_msg=name)
