"""PyTorch reference of the Sketch-RNN training step (benchmark only).

Used by ``benchmarks/sketch_rnn_step.py`` to time the same model, losses and
optimiser in PyTorch on the same CPU.  Not imported by the ``zoo`` package or
its tests; needs ``torch`` (the ``bench`` extra).

Model (same sizes and semantics as ``zoo.models.sketch_rnn.SketchRNN``):

* encoder: bidirectional RNN over the targets, summary = the forward state at
  ``seq_len - 1`` and the backward state after reading the sequence reversed
  within its length; ``mu`` / ``presig`` heads; ``z = mu + exp(presig/2) eps``;
* decoder: input ``[S_{i-1}, z]`` per step, initial state
  ``tanh(Linear(z))`` (split in the cell's flat layout), output
  ``Linear(3 + 6M)`` applied after the recurrence;
* losses: the magenta MDN offset loss (masked, ``eps = 1e-6`` inside the log,
  ``1 - rho^2`` floored at ``1e-6``), the unmasked pen cross-entropy, the KL
  floored at ``kl_tolerance`` and weighted by the annealed KL weight;
* optimiser: gradients clipped by value, then Adam (``torch.optim.Adam``,
  ``foreach`` implementation) with magenta's decaying learning rate.

Cells:

* ``lstm`` uses PyTorch's fused ``torch.nn.LSTM`` (ATen/oneDNN kernels) for
  both the encoder (``bidirectional=True``; ``encoder='packed'`` uses
  ``pack_padded_sequence``, ``encoder='masked'`` two unidirectional LSTMs over
  ``x`` and ``x`` reversed within its length, then a gather at ``seq_len-1``)
  and the decoder.  ``torch.nn.LSTM`` has no recurrent dropout on the
  candidate, so this reference does *less* work than the JAX step with
  ``use_recurrent_dropout=True`` (magenta's default).  The forget-gate bias
  1.0 is put into ``bias_ih``.
* ``layer_norm`` and ``hyper`` have no fused PyTorch kernel: they are written
  as eager per-time-step loops (input projections hoisted out of the loop
  as one matmul, recurrent dropout masks drawn once for all steps), the usual
  way such cells are written in PyTorch.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

_LOG_2PI = math.log(2.0 * math.pi)
LN_EPS = 1e-3


def reverse_within_length(x: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
  t = torch.arange(x.shape[1], device=x.device)[None, :]
  length = seq_len[:, None]
  idx = torch.where(t < length, length - 1 - t, t)
  return torch.gather(x, 1, idx[..., None].expand(-1, -1, x.shape[-1]))


def _gather_time(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
  return x[torch.arange(x.shape[0]), idx]


def _ortho_blocks(rows: int, units: int) -> torch.Tensor:
  w = torch.empty(rows, 4 * units)
  for k in range(4):
    nn.init.orthogonal_(w[:, k * units : (k + 1) * units])
  return w


def _ln(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
  mean = x.mean(-1, keepdim=True)
  var = (x - mean).square().mean(-1, keepdim=True)
  return (x - mean) * torch.rsqrt(var + LN_EPS) * gamma + beta


class LoopLSTM(nn.Module):
  """Eager per-step LSTM cell (magenta semantics), optional layer norm / hyper."""

  def __init__(
    self, in_dim: int, units: int, *, layer_norm: bool, keep_prob: float, recurrent_dropout: bool
  ):
    super().__init__()
    self.units, self.layer_norm = units, layer_norm
    self.keep_prob, self.recurrent_dropout = keep_prob, recurrent_dropout
    self.W_xh = nn.Parameter(nn.init.xavier_uniform_(torch.empty(in_dim, 4 * units)))
    self.W_hh = nn.Parameter(_ortho_blocks(units, units))
    if layer_norm:
      self.ln_gamma = nn.Parameter(torch.ones(4, units))
      self.ln_beta = nn.Parameter(torch.zeros(4, units))
      self.ln_c_gamma = nn.Parameter(torch.ones(units))
      self.ln_c_beta = nn.Parameter(torch.zeros(units))
    else:
      self.bias = nn.Parameter(torch.zeros(4 * units))

  def input_projection(self, x: torch.Tensor) -> torch.Tensor:
    pre = x @ self.W_xh
    return pre if self.layer_norm else pre + self.bias

  def masks(self, batch: int, steps: int, device=None):
    if not (self.training and self.recurrent_dropout and self.keep_prob < 1.0):
      return None
    keep = torch.rand(steps, batch, self.units, device=device) < self.keep_prob
    return keep.float() / self.keep_prob

  def step(self, xproj_t, c, h, mask_t):
    pre = xproj_t + h @ self.W_hh
    if self.layer_norm:
      b = pre.shape[0]
      pre = _ln(pre.view(b, 4, self.units), self.ln_gamma, self.ln_beta).view(b, -1)
    i, j, f, o = pre.chunk(4, dim=-1)
    g = torch.tanh(j)
    if mask_t is not None:
      g = g * mask_t
    c = c * torch.sigmoid(f + 1.0) + torch.sigmoid(i) * g
    cc = _ln(c, self.ln_c_gamma, self.ln_c_beta) if self.layer_norm else c
    return c, torch.tanh(cc) * torch.sigmoid(o)


class LoopHyperLSTM(nn.Module):
  """Eager per-step HyperLSTM (magenta's HyperLSTMCell, layer norm on)."""

  def __init__(
    self,
    in_dim: int,
    units: int,
    *,
    hyper_units: int,
    emb: int,
    keep_prob: float,
    recurrent_dropout: bool,
  ):
    super().__init__()
    self.units, self.hyper_units, self.emb = units, hyper_units, emb
    self.keep_prob, self.recurrent_dropout = keep_prob, recurrent_dropout
    self.W_xh = nn.Parameter(nn.init.xavier_uniform_(torch.empty(in_dim, 4 * units)))
    self.W_hh = nn.Parameter(_ortho_blocks(units, units))
    self.bias = nn.Parameter(torch.zeros(4 * units))
    self.hyper = LoopLSTM(
      in_dim + units, hyper_units, layer_norm=True, keep_prob=keep_prob, recurrent_dropout=False
    )
    self.zw_kernel = nn.Parameter(torch.zeros(hyper_units, 8 * emb))
    self.zw_bias = nn.Parameter(torch.ones(8, emb))
    self.alpha = nn.Parameter(torch.full((8, emb, units), 0.1 / emb))
    self.zb_kernel = nn.Parameter(torch.randn(hyper_units, 4 * emb) * 0.01)
    self.beta = nn.Parameter(torch.zeros(4, emb, units))
    self.ln_gamma = nn.Parameter(torch.ones(4, units))
    self.ln_beta = nn.Parameter(torch.zeros(4, units))
    self.ln_c_gamma = nn.Parameter(torch.ones(units))
    self.ln_c_beta = nn.Parameter(torch.zeros(units))

  def input_projection(self, x: torch.Tensor):
    # main x @ W_xh and the x-part of the hyper cell's input projection
    hx = x @ self.hyper.W_xh[: x.shape[-1]]
    return torch.cat([x @ self.W_xh, hx], dim=-1)

  masks = LoopLSTM.masks

  def step(self, xproj_t, carry, mask_t):
    c, h, hc, hh = carry
    u, e = self.units, self.emb
    b = h.shape[0]
    xh, hx = xproj_t[:, : 4 * u], xproj_t[:, 4 * u :]
    w_h_part = self.hyper.W_xh[self.hyper.W_xh.shape[0] - u :]
    hc, hh = self.hyper.step(hx + h @ w_h_part, hc, hh, None)
    zw = (hh @ self.zw_kernel).view(b, 8, e) + self.zw_bias
    scales = torch.bmm(zw.transpose(0, 1), self.alpha)  # [8, B, U]
    zb = (hh @ self.zb_kernel).view(b, 4, e)
    dyn = torch.bmm(zb.transpose(0, 1), self.beta)  # [4, B, U]
    hproj = (h @ self.W_hh).view(b, 4, u).transpose(0, 1)
    pre = scales[:4] * xh.view(b, 4, u).transpose(0, 1) + scales[4:] * hproj + dyn
    pre = pre + self.bias.view(4, 1, u)
    pre = _ln(pre.transpose(0, 1), self.ln_gamma, self.ln_beta)
    i, j, f, o = pre.unbind(1)
    g = torch.tanh(j)
    if mask_t is not None:
      g = g * mask_t
    c = c * torch.sigmoid(f + 1.0) + torch.sigmoid(i) * g
    h = torch.tanh(_ln(c, self.ln_c_gamma, self.ln_c_beta)) * torch.sigmoid(o)
    return (c, h, hc, hh)


def _run_loop(cell, x: torch.Tensor, carry):
  """Runs a loop cell over ``x [B, T, in]`` -> (outputs [B, T, U], final carry)."""
  b, steps = x.shape[0], x.shape[1]
  xproj = cell.input_projection(x).transpose(0, 1)  # [T, B, *]
  masks = cell.masks(b, steps, x.device)
  outs = []
  for t in range(steps):
    m = None if masks is None else masks[t]
    if isinstance(cell, LoopHyperLSTM):
      carry = cell.step(xproj[t], carry, m)
      outs.append(carry[1])
    else:
      carry = cell.step(xproj[t], *carry, m)
      outs.append(carry[1])
  return torch.stack(outs, 1), carry


class TorchSketchRNN(nn.Module):
  def __init__(
    self,
    *,
    enc_rnn_size=256,
    dec_rnn_size=512,
    z_size=128,
    num_mixture=20,
    cell="lstm",
    encoder="packed",
    recurrent_dropout=True,
    keep_prob=0.9,
    hyper_num_units=256,
    hyper_embedding_size=32,
  ):
    super().__init__()
    self.cell, self.encoder_mode = cell, encoder
    self.enc_rnn_size, self.dec_rnn_size, self.z_size = enc_rnn_size, dec_rnn_size, z_size
    self.num_mixture = num_mixture
    dec_in = 5 + z_size
    if cell == "lstm":
      if encoder == "packed":
        self.enc = nn.LSTM(5, enc_rnn_size, batch_first=True, bidirectional=True)
      else:
        self.enc_fw = nn.LSTM(5, enc_rnn_size, batch_first=True)
        self.enc_bw = nn.LSTM(5, enc_rnn_size, batch_first=True)
      self.dec = nn.LSTM(dec_in, dec_rnn_size, batch_first=True)
      for m in self.modules():
        if isinstance(m, nn.LSTM):
          for name, p in m.named_parameters():
            if name.startswith("bias"):
              nn.init.zeros_(p)
              if name.startswith("bias_ih"):  # torch gate order i, f, g, o
                u = p.shape[0] // 4
                with torch.no_grad():
                  p[u : 2 * u] = 1.0
      state = 2 * dec_rnn_size
    elif cell == "layer_norm":
      kw = dict(layer_norm=True, keep_prob=keep_prob, recurrent_dropout=recurrent_dropout)
      self.enc_fw = LoopLSTM(5, enc_rnn_size, **kw)
      self.enc_bw = LoopLSTM(5, enc_rnn_size, **kw)
      self.dec = LoopLSTM(dec_in, dec_rnn_size, **kw)
      state = 2 * dec_rnn_size
    elif cell == "hyper":
      kw = dict(
        hyper_units=hyper_num_units,
        emb=hyper_embedding_size,
        keep_prob=keep_prob,
        recurrent_dropout=recurrent_dropout,
      )
      self.enc_fw = LoopHyperLSTM(5, enc_rnn_size, **kw)
      self.enc_bw = LoopHyperLSTM(5, enc_rnn_size, **kw)
      self.dec = LoopHyperLSTM(dec_in, dec_rnn_size, **kw)
      state = 2 * (dec_rnn_size + hyper_num_units)
    else:
      raise ValueError(cell)
    self.enc_mu = nn.Linear(2 * enc_rnn_size, z_size)
    self.enc_presig = nn.Linear(2 * enc_rnn_size, z_size)
    self.dec_init = nn.Linear(z_size, state)
    self.output = nn.Linear(dec_rnn_size, 3 + 6 * num_mixture)
    for lin in (self.enc_mu, self.enc_presig, self.dec_init):
      nn.init.normal_(lin.weight, std=0.001)
      nn.init.zeros_(lin.bias)

  # -- encoder ---------------------------------------------------------------
  def _zeros_carry(self, cell, b):
    z = torch.zeros(b, cell.units)
    if isinstance(cell, LoopHyperLSTM):
      zh = torch.zeros(b, cell.hyper_units)
      return (z, z, zh, zh)
    return (z, z)

  def encode(self, x, seq_len):
    last = (seq_len - 1).clamp(min=0)
    if self.cell == "lstm" and self.encoder_mode == "packed":
      packed = nn.utils.rnn.pack_padded_sequence(
        x, seq_len.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
      )
      _, (h_n, _) = self.enc(packed)
      last_h = torch.cat([h_n[0], h_n[1]], dim=-1)
    elif self.cell == "lstm":
      h_fw, _ = self.enc_fw(x)
      h_bw, _ = self.enc_bw(reverse_within_length(x, seq_len))
      last_h = torch.cat([_gather_time(h_fw, last), _gather_time(h_bw, last)], -1)
    else:
      b = x.shape[0]
      h_fw, _ = _run_loop(self.enc_fw, x, self._zeros_carry(self.enc_fw, b))
      h_bw, _ = _run_loop(
        self.enc_bw, reverse_within_length(x, seq_len), self._zeros_carry(self.enc_bw, b)
      )
      last_h = torch.cat([_gather_time(h_fw, last), _gather_time(h_bw, last)], -1)
    last_h = last_h * (seq_len > 0).float()[:, None]
    return self.enc_mu(last_h), self.enc_presig(last_h)

  # -- full model ---------------------------------------------------------------
  def forward(self, strokes, seq_len):
    dec_in, targets = strokes[:, :-1], strokes[:, 1:]
    mu, presig = self.encode(targets, seq_len)
    z = mu + torch.exp(presig / 2.0) * torch.randn_like(mu)
    flat = torch.tanh(self.dec_init(z))
    b, steps = dec_in.shape[0], dec_in.shape[1]
    x = torch.cat([dec_in, z[:, None, :].expand(b, steps, z.shape[-1])], dim=-1)
    d = self.dec_rnn_size
    if self.cell == "lstm":
      c0, h0 = flat[:, :d], flat[:, d:]  # magenta flat layout [c, h]
      hs, _ = self.dec(x, (h0[None].contiguous(), c0[None].contiguous()))
    elif self.cell == "layer_norm":
      h0, c0 = flat[:, :d], flat[:, d:]  # [h, c]
      hs, _ = _run_loop(self.dec, x, (c0, h0))
    else:
      hu = self.dec.hyper_units
      total_h, total_c = flat.chunk(2, dim=-1)  # [h, hyper_h, c, hyper_c]
      carry = (total_c[:, :d], total_h[:, :d], total_c[:, d : d + hu], total_h[:, d : d + hu])
      hs, _ = _run_loop(self.dec, x, carry)
    raw = self.output(hs)
    return raw, mu, presig


def sketch_losses(raw, mu, presig, targets, *, num_mixture, kl_tolerance):
  m = num_mixture
  pen_logits = raw[..., :3]
  logits, mu_x, mu_y, lsx, lsy, rho = raw[..., 3:].split(m, dim=-1)
  rho = torch.tanh(rho)
  x, y = targets[..., 0:1], targets[..., 1:2]
  nx = (x - mu_x) * torch.exp(-lsx)
  ny = (y - mu_y) * torch.exp(-lsy)
  omr = torch.clamp((1.0 - rho) * (1.0 + rho), min=1e-6)
  quad = (nx - rho * ny).square() / omr + ny.square()
  log_n = -_LOG_2PI - lsx - lsy - 0.5 * torch.log(omr) - 0.5 * quad
  lse = torch.logsumexp(F.log_softmax(logits, -1) + log_n, dim=-1)
  nll = -torch.logaddexp(lse, torch.full_like(lse, math.log(1e-6)))
  mask = 1.0 - targets[..., 4]
  offset = (nll * mask).mean()
  pen = -(targets[..., 2:5] * F.log_softmax(pen_logits, -1)).sum(-1).mean()
  kl_raw = (0.5 * (mu.square() + torch.expm1(presig) - presig)).mean()
  kl = torch.clamp(kl_raw, min=kl_tolerance)
  return offset + pen, kl, kl_raw


class TorchTrainer:
  """One Sketch-RNN training step in PyTorch: forward, losses, backward, clip, Adam."""

  def __init__(
    self,
    model: TorchSketchRNN,
    *,
    learning_rate=1e-3,
    min_learning_rate=1e-5,
    decay_rate=0.9999,
    grad_clip=1.0,
    kl_weight=0.5,
    kl_weight_start=0.01,
    kl_decay_rate=0.99995,
    kl_tolerance=0.2,
  ):
    self.model = model.train()
    self.opt = torch.optim.Adam(model.parameters(), lr=learning_rate, foreach=True)
    self.lr, self.min_lr, self.decay = learning_rate, min_learning_rate, decay_rate
    self.grad_clip = grad_clip
    self.kl_w, self.kl_w0, self.kl_decay = kl_weight, kl_weight_start, kl_decay_rate
    self.kl_tolerance = kl_tolerance
    self.step_count = 0

  def step(self, strokes: torch.Tensor, seq_len: torch.Tensor) -> float:
    s = self.step_count
    for g in self.opt.param_groups:
      g["lr"] = (self.lr - self.min_lr) * self.decay**s + self.min_lr
    kl_weight = self.kl_w - (self.kl_w - self.kl_w0) * self.kl_decay**s
    raw, mu, presig = self.model(strokes, seq_len)
    r, kl, _ = sketch_losses(
      raw,
      mu,
      presig,
      strokes[:, 1:],
      num_mixture=self.model.num_mixture,
      kl_tolerance=self.kl_tolerance,
    )
    loss = r + kl_weight * kl
    self.opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_value_(self.model.parameters(), self.grad_clip)
    self.opt.step()
    self.step_count += 1
    return float(loss.detach())
