"""The SavedModel of a trained system: raw waveforms to anomaly scores.

`export_system` writes what `AnomalySystem.export` (and `asd-keras export`)
promises: `serving_default(waveform[, machine_type[, section]]) ->
anomaly_score, decision`, built from the very extractor serving models and
backend scoring layers that `AnomalySystem.score` uses.

The served graph checks its inputs before anything else runs, here and
only here for every system (`_checked_waveform`, `_group_index`), because a
SavedModel's signature does not enforce its declared shape and a network
turns bad audio into a plausible-looking number:

- the waveform's rank and channel axis (`(clips, samples)`, or `(clips,
  samples, 2)` for two-channel extractors);
- clips at least as long as every extractor needs (`score` rejects shorter
  files when it reads them);
- no NaN or inf sample (`score` rejects such files when it decodes them);
- a trained machine type and section.

Each failure is a `tf.errors.InvalidArgumentError` whose message names the
input, the value received and the fix.
"""

import keras
import tensorflow as tf

from asd_keras.systems.configuration import GROUPINGS
from asd_keras.systems.groups import machine_type_of
from asd_keras.systems.groups import owner_group
from asd_keras.systems.groups import section_of


def shortest_clip(extractor):
    """The fewest samples a clip needs for `extractor`, and why.

    The same rule as `score`, which reads the clips through the extractor's
    loader: its `min_samples`, or the fixed clip length when the length
    policy is `truncate` (shorter clips are an error there, not padded).

    Args:
        extractor: a fitted `FeatureExtractor` with a `loader()`.

    Returns:
        (int, str): the samples and a short reason for error messages.
    """
    loader = extractor.loader()
    if loader.length_policy == "truncate" and loader.length > loader.min_samples:
        return loader.length, (f"the clip length of the {extractor.name} extractor, "
                               "length_policy=truncate")
    return max(1, loader.min_samples), f"the shortest clip the {extractor.name} extractor reads"


def _assert(ok, message):
    """`tf.debugging.Assert` whose message (a string tensor built by
    `message()`) is only computed when `ok` is false: building it may need
    values (such as the first NaN's position) that only exist then."""
    text = tf.cond(ok, lambda: tf.constant(""), message)
    return tf.debugging.Assert(ok, [text])


def _checked_waveform(waveform, channels, min_samples, reason):
    """`waveform` once its shape, length and samples are checked.

    The returned tensor depends on every check, so no op of the model can
    run (and fail with a shape error, or score garbage) before them.
    """
    def shape_text():
        return tf.strings.reduce_join(tf.strings.as_string(shape), separator=", ")

    # The rank the caller passed: a signature does not enforce its declared
    # shape, and `tf.rank` (or the size of `tf.shape`) is folded into the
    # declared rank when the graph is built and optimised, so the dimensions
    # of the runtime shape are counted instead.
    shape = tf.shape(waveform)
    rank = tf.reduce_sum(tf.cast(shape >= 0, tf.int32))
    if channels == 1:
        shape_ok = tf.equal(rank, 2)
        expected = ("; this model takes (clips, samples) float32, one channel: pass the "
                    "samples of one microphone (e.g. waveform[..., 0]), or one clip as [clip]")
    else:
        # `[-1:]` is empty (and the check false by its rank) for a scalar.
        shape_ok = tf.logical_and(tf.equal(rank, 3),
                                  tf.reduce_all(tf.equal(shape[-1:], channels)))
        expected = (f"; this model takes (clips, samples, {channels}) float32, the near "
                    f"and far microphones on the last axis: transpose a (clips, "
                    f"{channels}, samples) array to (clips, samples, {channels})")
    checks = [_assert(shape_ok, lambda: tf.strings.join(
        ["waveform has shape [", shape_text(), "]", expected]))]
    # The length and sample checks index the second axis: after the rank check.
    with tf.control_dependencies(checks):
        samples = tf.shape(waveform)[1]
        checks.append(_assert(samples >= min_samples, lambda: tf.strings.join([
            "waveform holds clips of ", tf.strings.as_string(samples), " samples; at least ",
            str(min_samples), f" needed ({reason}): pass longer clips"])))
        finite = tf.math.is_finite(waveform)

        def first_bad():
            where = tf.where(tf.logical_not(finite))[0]
            return tf.strings.join([
                "waveform has a NaN or inf sample (clip ", tf.strings.as_string(where[0]),
                ", sample ", tf.strings.as_string(where[1]), "): the audio is corrupt; "
                "replace or drop that clip"])

        checks.append(_assert(tf.reduce_all(finite), first_bad))
    with tf.control_dependencies(checks):
        return tf.identity(waveform)


def _group_index(groups, grouping, machine_type, section):
    """The index into `groups` of the served clips' group, once the machine
    type (and section) are known to be trained ones."""
    if grouping == "all":
        return tf.constant(0, tf.int32)
    names = tf.constant(groups)
    machine_types = sorted({machine_type_of(g) for g in groups})
    known = tf.reduce_any(tf.equal(tf.constant(machine_types), machine_type))
    checks = [_assert(known, lambda: tf.strings.join([
        "machine_type ", machine_type, " is not one of the trained machine types ",
        ", ".join(machine_types), ": pass one of them"]))]
    key = machine_type
    if grouping == "section":
        key = tf.strings.join([machine_type, "_section_", section])
        sections = {m: ", ".join(section_of(g) for g in groups if machine_type_of(g) == m)
                    for m in machine_types}
        trained = tf.reduce_any(tf.equal(names, key))

        def unknown_section():
            listed = tf.gather(tf.constant([sections[m] for m in machine_types]), tf.argmax(
                tf.cast(tf.equal(tf.constant(machine_types), machine_type), tf.int32)))
            return tf.strings.join([
                "section ", section, " is not one of the trained sections ", listed,
                " of machine type ", machine_type, ": pass one of them"])

        with tf.control_dependencies(checks):
            checks.append(_assert(trained, unknown_section))
    with tf.control_dependencies(checks):
        matches = tf.reshape(tf.where(tf.equal(names, key)), [-1])
        return tf.cast(matches[0], tf.int32)


def export_system(system, out_dir):
    """Writes a system's SavedModel from raw waveforms to anomaly scores.

    `serving_default` takes float32 waveforms `(clips, samples)` (`(clips,
    samples, 2)` for two-channel extractors) and, as the groupings need
    them, scalar strings `machine_type` (e.g. `"fan"`) and `section` (e.g.
    `"00"`); it returns `anomaly_score` (float32) and `decision` (int32),
    both `(clips,)`. Bad inputs fail with an error naming the input and the
    fix (see the module docstring).

    Args:
        system: a fitted `AnomalySystem`.
        out_dir: str or Path. The SavedModel folder.

    Returns:
        dict: the manifest (inputs, waveform shape, groups, sample rate...).
    """
    groups = sorted(system.thresholds)
    grouping = system.config["grouping"]
    # Validated at construction: an extractor group never splits a backend group.
    finest = max(grouping, system.config["extractor_grouping"], key=GROUPINGS.index)
    thresholds = tf.constant([system.thresholds[g] for g in groups], tf.float32)
    archive = keras.export.ExportArchive()
    members = []
    feature_set = system.config["feature_set"]
    shortest = (1, "")
    for member in system.members:
        extractor_names = sorted(member.extractors)
        for extractor in member.extractors.values():
            shortest = max(shortest, shortest_clip(extractor))
        models = [member.extractors[g].serving_model(None) for g in extractor_names]
        layers = [member.backends[g].layer() for g in groups]
        for tracked in models + layers:
            archive.track(tracked)
        # Each backend group's extractor group (groupings nest).
        owner = [extractor_names.index(owner_group(g, extractor_names)) for g in groups]
        members.append((models, layers, tf.constant(owner, tf.int32)))
    # Two-channel extractors (DCASE 2026 near and far microphones) serve
    # `(clips, samples, 2)`.
    channels = next(iter(system.members[0].extractors.values())).serving_channels

    def serve(waveform, machine_type=None, section=None):
        index = _group_index(groups, grouping, machine_type, section)
        waveform = _checked_waveform(waveform, channels, *shortest)
        total = tf.zeros(tf.shape(waveform)[:1], tf.float32)
        for models, layers, owner in members:

            def features(model):
                sets = model(waveform, training=False)
                return sets[feature_set] if feature_set else next(iter(sets.values()))

            if len(models) == 1:
                values = features(models[0])
            else:
                values = tf.switch_case(owner[index],
                                        [lambda m=m: features(m) for m in models])
            total += tf.switch_case(
                index, [lambda lay=lay: tf.cast(lay(values), tf.float32) for lay in layers])
        return {"anomaly_score": total,
                "decision": tf.cast(total > thresholds[index], tf.int32)}

    shape = [None, None] if channels == 1 else [None, None, channels]
    signature = [tf.TensorSpec(shape, tf.float32, name="waveform")]
    if finest != "all":
        signature.append(tf.TensorSpec([], tf.string, name="machine_type"))
    if finest == "section":
        signature.append(tf.TensorSpec([], tf.string, name="section"))
    archive.add_endpoint("serve", serve, input_signature=signature)
    archive.write_out(str(out_dir), verbose=False)
    manifest = {"inputs": [spec.name for spec in signature], "waveform_shape": shape,
                "min_samples": shortest[0], "grouping": grouping,
                "groups": groups, "ensemble_size": len(system.members)}
    if grouping != "all":
        manifest["machine_types"] = sorted({machine_type_of(g) for g in groups})
    extractor = system.members[0].extractors
    rate = next(iter(extractor.values())).get_config().get("sample_rate")
    if rate is not None:
        manifest["sample_rate"] = rate
    return manifest
