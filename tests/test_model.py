"""The acoustic models: the paper's equations, agreement with torch's LSTM, and padding/packing invariance."""

import pytest
import torch
from torch import nn

from asr_cli.config import ModelConfig
from asr_cli.model import AcousticModel, PeepholeLSTM, RecurrentLayer, reverse_within_lengths, stack_and_subsample


def reference_peephole_lstm(layer: PeepholeLSTM, inputs: torch.Tensor, direction: int = 0) -> torch.Tensor:
    """Equations (1)-(5) of Sak et al. (2014), one utterance and one step at a time, written out."""
    hidden = layer.hidden_size
    w_ix, w_fx, w_cx, w_ox = layer.weight_x[direction].split(hidden)
    w_ir, w_fr, w_cr, w_or = layer.weight_r[direction].split(hidden)
    b_i, b_f, b_c, b_o = layer.bias[direction].split(hidden)
    w_ic, w_fc, w_oc = layer.peephole_weights[direction]
    w_rm = layer.weight_projection[direction] if layer.weight_projection is not None else None
    outputs = torch.zeros(inputs.shape[0], inputs.shape[1], layer.output_size, dtype=inputs.dtype)
    for b in range(inputs.shape[0]):
        r = torch.zeros(layer.output_size, dtype=inputs.dtype)
        c = torch.zeros(hidden, dtype=inputs.dtype)
        for t in range(inputs.shape[1]):
            x = inputs[b, t]
            i = torch.sigmoid(w_ix @ x + w_ir @ r + w_ic * c + b_i)
            f = torch.sigmoid(w_fx @ x + w_fr @ r + w_fc * c + b_f)
            c = f * c + i * torch.tanh(w_cx @ x + w_cr @ r + b_c)
            o = torch.sigmoid(w_ox @ x + w_or @ r + w_oc * c + b_o)
            m = o * torch.tanh(c)
            r = w_rm @ m if w_rm is not None else m
            outputs[b, t] = r
    return outputs


@pytest.mark.parametrize("projection_size", [0, 5])
@pytest.mark.parametrize("num_directions", [1, 2])
def test_a_peephole_layer_follows_the_papers_equations(projection_size, num_directions):
    torch.manual_seed(0)
    layer = PeepholeLSTM(6, 8, projection_size=projection_size, num_directions=num_directions).double()
    inputs = torch.randn(num_directions, 3, 7, 6, dtype=torch.float64)
    with torch.no_grad():
        outputs = layer(inputs)
        for direction in range(num_directions):
            expected = reference_peephole_lstm(layer, inputs[direction], direction)
            torch.testing.assert_close(outputs[direction], expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("projection_size", [0, 5])
def test_b_without_peepholes_equals_torch_lstm(projection_size):
    torch.manual_seed(1)
    ours = PeepholeLSTM(6, 8, projection_size=projection_size, peepholes=True)
    torch_lstm = nn.LSTM(6, 8, batch_first=True, proj_size=projection_size)
    with torch.no_grad():
        ours.peephole_weights.zero_()
        ours.weight_x[0].copy_(torch_lstm.weight_ih_l0)
        ours.weight_r[0].copy_(torch_lstm.weight_hh_l0)
        ours.bias[0].copy_(torch_lstm.bias_ih_l0 + torch_lstm.bias_hh_l0)
        if projection_size:
            ours.weight_projection[0].copy_(torch_lstm.weight_hr_l0)
        inputs = torch.randn(4, 9, 6)
        torch.testing.assert_close(ours(inputs[None])[0], torch_lstm(inputs)[0], atol=1e-5, rtol=1e-5)


LENGTHS = [11, 7, 3]


def _padded_batch(feature_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(2)
    batch = torch.zeros(len(LENGTHS), max(LENGTHS), feature_dim)
    for row, length in enumerate(LENGTHS):
        batch[row, :length] = torch.randn(length, feature_dim)
    # Garbage in the padding must not leak into any utterance's outputs.
    batch[1, 7:] = 100.0
    return batch, torch.tensor(LENGTHS)


@pytest.mark.parametrize("peepholes", [False, True])
def test_c_bidirectional_layer_on_padded_batch_equals_single_runs_and_packed_lstm(peepholes):
    config = ModelConfig(hidden_size=8, peepholes=peepholes)
    layer = RecurrentLayer(config, input_size=5).eval()
    batch, lengths = _padded_batch(5)
    with torch.no_grad():
        outputs = layer(batch, lengths)
        for row, length in enumerate(LENGTHS):
            alone = layer(batch[row : row + 1, :length], torch.tensor([length]))
            torch.testing.assert_close(outputs[row, :length], alone[0], atol=1e-5, rtol=1e-5)
    if peepholes:
        return
    packed_lstm = nn.LSTM(5, 8, batch_first=True, bidirectional=True)
    with torch.no_grad():
        for suffix, direction in (("", layer.forward_direction), ("_reverse", layer.backward_direction)):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(packed_lstm, f"{name}_l0{suffix}").copy_(getattr(direction, f"{name}_l0"))
        packed = nn.utils.rnn.pack_padded_sequence(batch, lengths, batch_first=True, enforce_sorted=False)
        expected, _ = nn.utils.rnn.pad_packed_sequence(packed_lstm(packed)[0], batch_first=True)
        for row, length in enumerate(LENGTHS):
            torch.testing.assert_close(outputs[row, :length], expected[row, :length], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "config",
    [
        ModelConfig(architecture="blstm", num_layers=2, hidden_size=8, projection_size=4, input_dim=5, vocab_size=6),
        ModelConfig(architecture="blstm", num_layers=2, hidden_size=8, peepholes=True, input_dim=5, vocab_size=6),
        ModelConfig(architecture="lstm", num_layers=2, hidden_size=8, input_dim=5, vocab_size=6),
        ModelConfig(architecture="dnn", num_layers=2, hidden_size=16, dnn_context=2, input_dim=5, vocab_size=6),
    ],
    ids=["blstmp", "peephole-blstm", "lstm", "dnn"],
)
def test_whole_model_is_padding_invariant(config):
    model = AcousticModel(config).eval()
    model.set_cmvn(torch.full((5,), 0.5), torch.full((5,), 2.0))
    batch, lengths = _padded_batch(5)
    with torch.no_grad():
        log_probs, output_lengths = model(batch, lengths)
        assert output_lengths.tolist() == [4, 3, 1]  # ceil(length / 3)
        torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(log_probs.shape[:2]))
        for row, length in enumerate(LENGTHS):
            alone, _ = model(batch[row : row + 1, :length], torch.tensor([length]))
            torch.testing.assert_close(log_probs[row, : output_lengths[row]], alone[0], atol=1e-5, rtol=1e-5)


def test_stacking_and_subsampling():
    features = torch.arange(7, dtype=torch.float32).view(1, 7, 1)
    stacked, lengths = stack_and_subsample(features, torch.tensor([7]), stack=3, subsample=3)
    assert stacked[0].tolist() == [[0, 1, 2], [3, 4, 5], [6, 0, 0]]
    assert lengths.tolist() == [3]


def test_reversal_within_lengths_is_its_own_inverse():
    sequences = torch.arange(8, dtype=torch.float32).view(2, 4, 1)
    reversed_ = reverse_within_lengths(sequences, torch.tensor([4, 2]))
    assert reversed_[:, :, 0].tolist() == [[3, 2, 1, 0], [5, 4, 6, 7]]
    assert torch.equal(reverse_within_lengths(reversed_, torch.tensor([4, 2])), sequences)


def test_bad_configurations_are_refused():
    with pytest.raises(ValueError, match="architecture"):
        ModelConfig(architecture="transformer")
    with pytest.raises(ValueError, match="projection"):
        ModelConfig(hidden_size=100, projection_size=200)


def test_an_lstmp_carried_in_pieces_equals_it_run_at_once():
    import torch

    from asr_cli.model import run_torch_lstm

    torch.manual_seed(0)
    lstm = torch.nn.LSTM(12, 20, batch_first=True, proj_size=8)
    inputs = torch.randn(3, 30, 12)
    whole = run_torch_lstm(lstm, inputs)[0]
    first, state = run_torch_lstm(lstm, inputs[:, :11])  # carried in two pieces, as a stream carries it
    torch.testing.assert_close(torch.cat([first, run_torch_lstm(lstm, inputs[:, 11:], state)[0]], 1), whole)
