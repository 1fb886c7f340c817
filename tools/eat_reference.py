"""Stand-alone PyTorch reference of the EAT encoder, for parity checks only.

Not part of the library: ``asd_keras`` never imports torch. This file exists so
that tests can compare our Keras port of EAT with an independent PyTorch
implementation (random or official weights). Inference only: no dropout,
drop-path, masking, ALiBi or decoder. Written from the facts below; no code is
copied. Official repository: cwx-worst-one/EAT.

Facts and where they come from:
- feature_extract/feature_extract.py (also data/raw_audio_dataset.py,
  evaluation/eval.py, inference/inference.py): subtract the waveform mean;
  kaldi fbank (htk_compat, 16 kHz, no energy, hanning, 128 mels, dither 0,
  shift 10 ms); zero-pad at the end of time / crop to target_length; THEN
  normalise (x - mean) / (2 * std), so padded frames become -mean / (2 * std).
- models/mae.py PatchEmbed_new: Conv2d(in_chans, D, kernel=stride=16) with
  bias, then flatten(2).transpose(1, 2) -> tokens time-major (t * 8 + f).
- models/mae.py get_2d_sincos_pos_embed_flexible: meshgrid(w, h) ('xy'), so
  the FIRST D/2 channels encode the frequency-band index and the LAST D/2 the
  time-patch index (despite the "grid_h" comment); each half is
  [sin(p * w_k), cos(p * w_k)], w_k = 10000 ** -(k / (D / 4)), float32 NumPy.
- models/images.py ImageEncoder: positions = Parameter((1, max_length * W, D),
  requires_grad=False), max_length default 768 (D2vImageConfig; the configs do
  not override it); positions[:, :N] is added to patch tokens only.
- models/base.py contextualized_features: add positions, then prepend
  extra_tokens (num_extra_tokens: 1 in config/pretraining_AS2M.yaml), then
  context_encoder = BlockEncoder with prenet_depth 0 whose norm is applied
  first because layer_norm_first is False.
- models/EAT_pretraining.py: make_layer_norm = LayerNorm(eps=norm_eps=1e-6)
  for blocks and context_encoder.norm; AltBlock(qkv_bias=True, mlp_ratio 4);
  self.norm is None when layer_norm_first is False (no final norm).
- models/modules.py AltBlock (layer_norm_first=False branch) and AltAttention;
  timm Mlp: fc1 -> nn.GELU() (erf) -> fc2, hidden int(D * mlp_ratio).
  NOTE: the official ``layer_results`` are the FFN outputs (ffn_targets, since
  end_of_block_targets is False), NOT the block outputs returned here.
- models/EAT_audio_classification.py: CLS_TOKEN mode takes x[:, 0], then
  fc_norm = LayerNorm(D, eps=1e-6) and head = Linear(D, num_classes); forward
  returns logits (the sigmoid is applied only in evaluation / inference).
  Fine-tuned checkpoints store the encoder under a ``model.`` prefix.
"""
import numpy as np
import torch
import torchaudio
from torch import nn


def eat_fbank(waveform, target_length=1024, norm_mean=-4.268, norm_std=4.569,
              dtype=torch.float32):
    """(num_samples,) 16 kHz waveform -> (target_length, 128) normalised fbank.

    dtype: float32 as the official code; float64 measures torchaudio's own
    float32 rounding (the parity tolerance of the fbank, encoder_parity.py)."""
    w = waveform.to(dtype)
    w = w - w.mean()
    fb = torchaudio.compliance.kaldi.fbank(
        w[None], htk_compat=True, sample_frequency=16000, use_energy=False,
        window_type="hanning", num_mel_bins=128, dither=0.0, frame_shift=10)
    n = fb.shape[0]
    if n < target_length:
        fb = torch.cat([fb, fb.new_zeros(target_length - n, fb.shape[1])])
    fb = fb[:target_length]
    return (fb - norm_mean) / (norm_std * 2)


def sincos_table(dim, num_time, num_bands):
    """(num_time * num_bands, dim) float32 table, row t * num_bands + f."""
    omega = np.arange(dim // 4, dtype=np.float32)
    omega /= dim / 4.0
    omega = 1.0 / 10000 ** omega
    t, f = np.meshgrid(np.arange(num_time, dtype=np.float32),
                       np.arange(num_bands, dtype=np.float32), indexing="ij")
    halves = []
    for pos in (f.reshape(-1), t.reshape(-1)):  # frequency half first
        out = np.einsum("m,d->md", pos, omega)
        halves += [np.sin(out), np.cos(out)]
    return np.concatenate(halves, axis=1).astype(np.float32)


class _Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class _Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class _PostLNBlock(nn.Module):
    def __init__(self, dim, heads, mlp_ratio, eps):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim, eps=eps), _Attention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim, eps=eps), _Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        r = self.norm1(x + self.attn(x))
        return self.norm2(r + self.mlp(r))


class EATReference(nn.Module):
    """EAT encoder whose state_dict keys follow the fairseq checkpoint layout."""

    def __init__(self, embed_dim=768, depth=12, num_heads=12, mlp_ratio=4.0, patch_size=16,
                 num_bands=8, max_length=768, norm_eps=1e-6, num_classes=0, seed=None):
        super().__init__()
        self.patch_size, self.num_bands, self.num_classes = patch_size, num_bands, num_classes
        image = nn.Module()
        image.local_encoder = nn.Module()
        image.local_encoder.proj = nn.Conv2d(1, embed_dim, patch_size, stride=patch_size)
        image.fixed_positional_encoder = nn.Module()
        table = torch.from_numpy(sincos_table(embed_dim, max_length, num_bands))
        image.fixed_positional_encoder.positions = nn.Parameter(table[None], requires_grad=False)
        image.extra_tokens = nn.Parameter(torch.zeros(1, 1, embed_dim))
        image.context_encoder = nn.Module()
        image.context_encoder.norm = nn.LayerNorm(embed_dim, eps=norm_eps)
        self.modality_encoders = nn.ModuleDict({"IMAGE": image})
        self.blocks = nn.ModuleList(
            _PostLNBlock(embed_dim, num_heads, mlp_ratio, norm_eps) for _ in range(depth))
        if num_classes > 0:  # fc_norm eps 1e-6: EAT_audio_classification.py
            self.fc_norm = nn.LayerNorm(embed_dim, eps=1e-6)
            self.head = nn.Linear(embed_dim, num_classes)
        self.randomize_(seed)

    @torch.no_grad()
    def randomize_(self, seed=None):
        """Non-trivial random init of every trainable parameter (not positions).

        seed=None draws from torch's global RNG (deterministic under
        torch.manual_seed); an int uses a private generator."""
        g = None if seed is None else torch.Generator().manual_seed(int(seed))
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            if isinstance(self.get_submodule(name.rsplit(".", 1)[0]), nn.LayerNorm) \
                    and name.endswith(".weight"):
                p.normal_(0.0, 0.1, generator=g).add_(1.0)
            elif name.endswith(".bias"):
                p.normal_(0.0, 0.02, generator=g)
            elif name.endswith("extra_tokens"):
                p.normal_(0.0, 0.02, generator=g)
            else:  # Linear / Conv weight: Xavier-normal scale
                fan_out, fan_in = p.shape[0], p[0].numel()
                p.normal_(0.0, (2.0 / (fan_in + fan_out)) ** 0.5, generator=g)
        return self

    def extract_features(self, fbank):
        """(B, T, 128) -> [input to block 1, output of block 1, ..., block depth]."""
        image = self.modality_encoders["IMAGE"]
        assert fbank.shape[2] == self.patch_size * self.num_bands, fbank.shape
        x = image.local_encoder.proj(fbank[:, None]).flatten(2).transpose(1, 2)
        pos = image.fixed_positional_encoder.positions
        assert x.shape[1] <= pos.shape[1], "input longer than max_length time patches"
        x = x + pos[:, : x.shape[1]]
        x = torch.cat([image.extra_tokens.expand(x.shape[0], -1, -1), x], dim=1)
        hidden = [image.context_encoder.norm(x)]
        for block in self.blocks:
            hidden.append(block(hidden[-1]))
        return hidden

    def forward(self, fbank):
        return self.extract_features(fbank)[-1]

    def classify(self, fbank):
        """CLS_TOKEN prediction mode; returns logits (no sigmoid)."""
        assert self.num_classes > 0, "built without a classifier head"
        return self.head(self.fc_norm(self.forward(fbank)[:, 0]))


def load_official_state_dict(model, state):
    """Load a fairseq ``cfg['model']`` dict: strips a leading ``model.`` (fine-tuned
    checkpoints), drops keys the encoder lacks (``_ema``, decoder ...), loads
    strictly and returns the dropped key names."""
    state = {k[6:] if k.startswith("model.") else k: v for k, v in state.items()}
    own = model.state_dict().keys()
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=True)
    return sorted(k for k in state if k not in own)


if __name__ == "__main__":
    torch.set_num_threads(1)
    torch.manual_seed(0)
    wave = torch.randn(16000)
    fb = eat_fbank(wave, target_length=96)
    tiny = EATReference(embed_dim=32, depth=2, num_heads=4, max_length=64, num_classes=5, seed=0).eval()
    with torch.no_grad():
        feats = tiny.extract_features(fb[None])
        logits = tiny.classify(fb[None])
    print("fbank", tuple(fb.shape), "features", [tuple(h.shape) for h in feats],
          "logits", tuple(logits.shape))
    for k, v in tiny.state_dict().items():
        print(f"  {k} {tuple(v.shape)}")
    base = EATReference()
    print("base config: state_dict keys =", len(base.state_dict()),
          "parameters =", sum(p.numel() for p in base.parameters()))
