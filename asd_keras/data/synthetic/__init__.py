"""Synthetic machine sounds written in the exact DCASE Task 2 layouts.

Users can try every system before downloading 100 GB of DCASE data, and the
tests and the demo need data that these machines can make. Each machine type
is a small physical sound model:

* fan: blade-pass harmonics of a rotor plus band-limited airflow noise;
  anomalies: imbalance (once-per-turn tone and modulation), a cracked blade
  (a click every turn), clogging (duller, louder airflow).
* pump: motor hum, vane-pass harmonics and flow noise; anomalies: cavitation
  (random crackle), a leak (high hiss), a worn impeller (vane-pass jitter).
* gearbox: gear-mesh harmonics with shaft-rate sidebands; anomalies: a broken
  tooth (an impact every shaft turn), wear (strong sidebands, mesh jitter).
* valve: a solenoid's periodic clicks and flow hiss; anomalies:
  contamination (detuned, longer clicks), timing faults (late or missed
  clicks).
* slider: a slide rail's strokes (motor tone following the speed, friction
  noise, end-stop knocks); anomalies: no grease (a squeal), rail damage (a
  tick at one position of every stroke).
* bearing: a rolling-element bearing on a shaft (shaft-rate harmonics, weak
  outer- and inner-race ball-pass tones, the inner one shaft-rate modulated,
  broadband friction noise); attribute: rotation speed; anomalies: an
  outer-race defect (impacts at the outer ball-pass rate ringing the
  housing's resonance), an inner-race defect (impacts at the inner ball-pass
  rate, swelling once per shaft turn), lubrication loss (louder friction and
  rough high-frequency noise).
* ToyCar: a toy car on a rolling belt (commutator whine and pinion mesh
  following the motor speed, tyre/belt noise); attribute: speed; anomalies:
  a bent shaft (once-per-wheel-turn speed and level wobble and thump), a
  damaged gear (an impact every wheel turn, mesh modulation), a loose part
  (bursts of rattle clicks).
* ToyTrain: a toy train on a track of rail segments (motor tone, brush
  noise, wheel-rail rumble, each axle clacking over every rail joint at a
  speed-dependent rate); attribute: speed; anomalies: a flat wheel (an
  impact every wheel turn), a derailment-like scrape (bursts of rough
  broadband grinding), a chipped rail (a sharp extra clack per axle at one
  place of the loop, once per lap).

`MACHINE_TYPES` lists every type; seeds derive from a type's position in it,
so new types are appended and never change the earlier types' audio.
`generate` writes `DEFAULT_MACHINE_TYPES` (the first five) unless told
otherwise; `DCASE2022_MACHINE_TYPES` is the DCASE 2022 Task 2 set (fan,
gearbox, bearing, slider, ToyCar, ToyTrain, valve), whose dev sections 00-02
and eval ("additional training") sections 03-05 the dcase2022 layout writes
with `eval=True`. Any type can be written in any layout.

A section is one machine instance with its own physical parameters. An
attribute (speed, flow, pattern, ...) changes the sound. The source domain
has many training clips; the target domain has a few, with the attribute
shifted out of the source range and a louder background. All machine types
share one factory background (pink noise, mains hum, distant machinery,
random clanks). Everything is deterministic given the seed.

In the 2026 layout every clip has two channels: channel 0 is the near
microphone (at the machine), channel 1 the far one (out in the hall). With
m(t) the machine (unit RMS when normal), s(t) ONE background scene per clip
(unit RMS) and b the domain's background level (`background_gain`, times 1.6
in the target domain):

    near(t) = 0.1 * (m(t) + b * g_n * s(t - d_n))
    far(t)  = 0.1 * (a_f * (h * m)(t - d_m) + b * g_f * s(t - d_f))

* The scene s is rendered once, 6 ms longer than the clip, and both
  microphones hear that same realisation with their own gain and delay:
  g_n ~ U(0.8, 1.1), g_f ~ U(1.5, 2.1) (the far microphone hears more of
  the hall), d_n, d_f ~ U(0.5, 5) ms (8-80 samples at 16 kHz, so the far
  channel's copy lags the near one's by d_f - d_n, up to +-4.5 ms). The
  two background parts are therefore the same waveform, not two noises of
  the same kind.
* The machine is direct (gain 1, no delay) at the near microphone and at
  the far one weaker, a_f ~ U(0.3, 0.4) (about 8-10 dB less energy),
  reverberant (h: a 0.3 s exponentially decaying noise response, time
  constant 80 ms, unit energy) and later, d_m ~ U(2, 6) ms. The far path
  hears the clip continued circularly 0.3 s + 6 ms into the past, so it is
  in steady state from the first sample and every machine event lies
  within the clip.
* Gains and delays are the geometry of one section (machine instance),
  drawn from their own generator (seed, machine type, split, section,
  tag 2026) and so leaving every other random stream alone; per clip the
  two background gains jitter by +-5 % (delays stay fixed).
* The domains differ in the scene's level (b) and its composition: the
  source scene is the plain sum pink + tonal bed + clanks, the target
  scene weights them 0.5 / 2.0 / 2.0 (less broadband noise, more hum and
  distant machinery, louder clanks) before scaling to unit RMS, so most of
  the target background's energy lies below 400 Hz (about 0.85-0.9 of it
  against about 0.6-0.65 in the source domain).
* As in every layout, a clip whose peak exceeds 0.99 is scaled down as a
  whole (one factor for both channels, so their ratios hold), and clips
  are float32.

Why subtracting the far channel (for example the "Residual View" embedding
f_near - alpha * f_far) can help: both channels carry the same background
realisation, so a scaled far view carries the near channel's actual
background, not just background of the same kind, and subtracting it can
remove what the channels share (with independent realisations, as before,
nothing could cancel). Why it can hurt: the far channel also carries the
machine (a_f, reverberant, delayed), so subtracting it also removes part of
the machine's own sound, anomalies included; and the background matches only
up to gain and delay. The ratio g_n / g_f differs per section and per clip,
so one alpha cannot fit every clip; the lag D = d_f - d_n leaves, in
waveform terms, 2|sin(pi f D)| of the background at frequency f, so
cancellation holds only below about 1 / (6 D) (37 Hz for D = 4.5 ms, 170 Hz
for 1 ms); frame-level features blur this mismatch but do not remove it.
"""


from asd_keras.data.synthetic.background import FactoryBackground
from asd_keras.data.synthetic.config import SynthConfig
from asd_keras.data.synthetic.machines import DCASE2022_MACHINE_TYPES
from asd_keras.data.synthetic.machines import DEFAULT_MACHINE_TYPES
from asd_keras.data.synthetic.machines import MACHINE_TYPES
from asd_keras.data.synthetic.writer import generate
from asd_keras.data.synthetic.writer import synthetic_data_root
