"""Names, Keras serialization dicts and `module:Name` import paths → Keras objects, with suggestions."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kerasrun._tf import keras
from kerasrun.config.schema import import_paths
from kerasrun.config.spec import is_named_object, split_spec
from kerasrun.config.train import CALLBACK_PATH_KEYS
from kerasrun.errors import Collector, ConfigError, Problem
from kerasrun.imports import IMPORT_PATH, SpecError, import_object, suggest

Loc = tuple[Any, ...]
# Keys in layer kwargs whose values are themselves Keras objects, and the Keras namespace that resolves each.
NESTED_KINDS: dict[str, tuple[str, Any]] = {
    "_initializer": ("initializer", keras.initializers),
    "_regularizer": ("regularizer", keras.regularizers),
    "_constraint": ("constraint", keras.constraints),
    "activation": ("activation", keras.activations),
}


# Arguments that hold data (tokens, names), never an import path, however a string in them looks.
DATA_ARGUMENTS = ("vocabulary", "name", "oov_token", "mask_token")


# Arguments of Keras 2 and other libraries a user may bring, under their Keras 3 names.
RENAMED_ARGUMENTS = {"lr": "learning_rate", "decay": "weight_decay", "input_dim": "input_shape"}
# What keras.layers.Layer takes through **kwargs besides its named arguments.
LAYER_KWARGS = ("input_dim", "input_shape", "batch_size", "batch_input_shape")


def accepted_arguments(cls: type) -> list[str]:
    """The keyword arguments a class's constructor names, up its bases (a subclass passes **kwargs on to them)."""
    names: dict[str, None] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        try:
            parameters = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):
            continue
        names.update(dict.fromkeys(p.name for p in parameters if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)))
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            break  # nothing goes further up
    if issubclass(cls, keras.layers.Layer):
        names.update(dict.fromkeys(LAYER_KWARGS))
    return list(names)


def argument_hint(cls: Any, kwargs: dict[str, Any]) -> str | None:
    """`did you mean` for each argument the class does not take (`unit` for Dense's `units`, Keras 2's `lr`), or None."""
    if not inspect.isclass(cls):
        return None
    accepted = accepted_arguments(cls)
    hints = []
    for key in kwargs:
        if key in accepted:
            continue
        renamed = RENAMED_ARGUMENTS.get(key)
        close = f"did you mean `{renamed}`?" if renamed in accepted else suggest(key, accepted)
        hints.append(f"`{key}`: {close}" if close else f"`{key}` is not an argument of {cls.__name__}")
    # A quoted number is text to YAML: Keras's message shows it as the number (`Received: units=64`).
    hints += [
        f"`{key}` is the text {value!r} (quoted in the YAML): write {value.strip()} without quotes"
        for key, value in kwargs.items()
        if key in accepted and key != "name" and isinstance(value, str) and re.fullmatch(r"\s*-?\d+(\.\d*)?([eE][-+]?\d+)?\s*", value)
    ]
    return "; ".join(hints) or None


def call_with_kwargs(obj: Any, kwargs: dict[str, Any], what: str) -> Any:
    """Instantiate a class (or call a factory) with kwargs; a plain function without kwargs is returned as is."""
    if inspect.isclass(obj):
        try:
            return obj(**kwargs)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:  # what Keras constructors raise for bad arguments
            raise SpecError(f"{obj.__name__} rejected its arguments: {exc}", hint=argument_hint(obj, kwargs)) from None
    if callable(obj):
        if kwargs:
            raise SpecError(f"{what} `{getattr(obj, '__name__', obj)}` is a function; it takes no arguments here")
        return obj
    raise SpecError(f"{what} import path must name a class or function, got {type(obj).__name__}")


def public_names(module: Any, base: type | None = None) -> list[str]:
    """Public names of a Keras namespace (optionally only subclasses of `base`), plus snake_case functions."""
    names = []
    for name in dir(module):
        if name.startswith("_"):
            continue
        obj = getattr(module, name)
        if (base is None and callable(obj)) or (base is not None and inspect.isclass(obj) and issubclass(obj, base)):
            names.append(name)
    return names


def resolve_with_getter(kind: str, spec: Any, getter: Callable[[Any], Any], namespace: Any, base: type | None) -> Any:
    """Resolve a spec through Keras's own getter; raise SpecError with suggestions when it fails."""
    name, kwargs, keras_dict = split_spec(spec)
    if ":" in name:
        return call_with_kwargs(import_object(name), kwargs, kind)
    if keras_dict is not None:
        identifier: Any = keras_dict
    elif isinstance(spec, str):
        identifier = name
    else:
        identifier = {"class_name": name, "config": kwargs}
    try:
        return getter(identifier)
    except (ValueError, TypeError) as exc:
        known = public_names(namespace, base)
        if name not in known and name.lower() not in {k.lower() for k in known}:
            raise SpecError(f"unknown {kind} `{name}`", hint=suggest(name, known)) from None
        raise SpecError(f"{kind} `{name}`: {exc}") from None


def resolve_optimizer(spec: Any, loc: Loc = ("compile", "optimizer")) -> Any:
    """An optimizer instance; a learning-rate schedule (or any Keras object) may be given as an argument."""
    name, kwargs, keras_dict = split_spec(spec)
    if keras_dict is None and kwargs and ":" not in name:
        inner = loc + (name,)
        spec = {name: resolve_nested(kwargs, inner)}
        optimizer_class = getattr(keras.optimizers, name, None)
        if inspect.isclass(optimizer_class) and issubclass(optimizer_class, keras.optimizers.Optimizer):
            try:
                return optimizer_class(**spec[name])
            except (TypeError, ValueError, KeyError) as exc:
                raise SpecError(f"optimizer `{name}`: {exc}", loc=inner, hint=argument_hint(optimizer_class, spec[name])) from None
    return resolve_with_getter("optimizer", spec, keras.optimizers.get, keras.optimizers, keras.optimizers.Optimizer)


def resolve_loss(spec: Any) -> Any:
    """A loss for `compile`: Keras names stay strings so Keras keeps its own naming."""
    value = resolve_with_getter("loss", spec, keras.losses.get, keras.losses, None)
    return spec if isinstance(spec, str) and ":" not in spec else value


def resolve_metric(spec: Any) -> Any:
    """A metric for `compile`: strings like `accuracy` stay strings, as Keras resolves them per loss."""
    if isinstance(spec, str) and spec in ("accuracy", "acc", "crossentropy", "ce"):
        return spec
    value = resolve_with_getter("metric", spec, keras.metrics.get, keras.metrics, None)
    return spec if isinstance(spec, str) and ":" not in spec else value


def resolve_nested(kwargs: dict[str, Any], loc: Loc) -> dict[str, Any]:
    """Resolve initializer/regularizer/constraint/activation names, then Keras objects and import paths at any depth."""
    out = dict(kwargs)
    for key, value in kwargs.items():
        found = next((v for suffix, v in NESTED_KINDS.items() if key.endswith(suffix)), None)
        # Keras's getter takes a name ("he_normal") or its serialization dict (any dict, for an activation);
        # everything else — {RandomNormal: {...}}, import paths, nested objects — is built as Python would.
        keras_name = isinstance(value, str) and ":" not in value
        keras_dict = isinstance(value, dict) and ("class_name" in value or key == "activation")
        if found is None or not (keras_name or keras_dict):
            out[key] = resolve_argument(value, loc + (key,), key)
            continue
        kind, namespace = found
        try:
            out[key] = resolve_with_getter(kind, value, namespace.get, namespace, None)
        except SpecError as exc:
            raise SpecError(str(exc), exc.hint, loc=exc.loc or loc + (key,)) from None
    return out


def argument_namespaces(key: str | None) -> list[tuple[str, Any, Any]]:
    """Where a `{ClassName: {kwargs}}` argument's class is looked up: by the argument's name, else everywhere in this order."""
    layers = ("layer", keras.layers, keras.layers.Layer)
    schedules = ("learning-rate schedule", keras.optimizers.schedules, keras.optimizers.schedules.LearningRateSchedule)
    initializers = ("initializer", keras.initializers, keras.initializers.Initializer)
    regularizers = ("regularizer", keras.regularizers, keras.regularizers.Regularizer)
    constraints = ("constraint", keras.constraints, keras.constraints.Constraint)
    if key is not None:
        for suffix, kind in (("_initializer", initializers), ("_regularizer", regularizers), ("_constraint", constraints)):
            if key.endswith(suffix):
                return [kind]
        if key == "learning_rate":
            return [schedules]
        if key in ("layer", "backward_layer", "cell") or key.endswith("_layer"):
            return [layers]
    return [layers, schedules, initializers, regularizers, constraints]


def keras_class(name: str, key: str | None) -> Any:
    """The Keras class `name` names for an argument called `key`, or None."""
    for _, namespace, base in argument_namespaces(key):
        obj = getattr(namespace, name, None)
        if inspect.isclass(obj) and issubclass(obj, base):
            return obj
    return None


def resolve_argument(value: Any, loc: Loc, key: str | None = None) -> Any:
    """An argument of a Keras object, with Keras objects and import paths inside it resolved, at any depth.

    `{ClassName: {kwargs}}` with a Keras class name (layer, learning-rate schedule, initializer,
    regularizer, constraint) becomes that object, built with its kwargs (omitted ones take Keras's
    defaults); `{module:Name: {kwargs}}` calls the imported object; a string `module:name` is the
    imported object itself (a function such as a schedule); Keras's `{class_name, config}` dicts are
    deserialized by Keras. Anything else is returned as it is, lists and mappings walked.
    """
    if isinstance(value, str):
        if key in CALLBACK_PATH_KEYS or key in DATA_ARGUMENTS or not IMPORT_PATH.match(value):
            return value
        try:
            return import_object(value)
        except SpecError as exc:
            raise SpecError(str(exc), exc.hint, loc=loc) from None
    if isinstance(value, list):
        return [resolve_argument(item, loc + (index,), key) for index, item in enumerate(value)]
    if not isinstance(value, dict):
        return value
    if "class_name" in value:
        try:
            return keras.saving.deserialize_keras_object(value)
        except Exception as exc:  # Keras raises many kinds for a bad serialization dict
            raise SpecError(f"Keras cannot deserialize this object: {exc}", loc=loc) from None
    if is_named_object(value):
        name, kwargs, _ = split_spec(value)
        target = None
        if IMPORT_PATH.match(name):
            try:
                target = import_object(name)
            except SpecError as exc:
                raise SpecError(str(exc), exc.hint, loc=loc) from None
        else:
            target = keras_class(name, key)
            kinds = argument_namespaces(key)
            if target is None and len(kinds) == 1 and name[:1].isupper():  # e.g. learning_rate: {ExponentialDecayy: …}
                kind, namespace, base = kinds[0]
                raise SpecError(f"unknown {kind} `{name}`", suggest(name, public_names(namespace, base)), loc=loc + (name,))
        if target is not None:
            inner = loc + (name,)
            arguments = resolve_nested(kwargs, inner)
            try:
                return call_with_kwargs(target, arguments, key or "argument")
            except SpecError as exc:
                raise SpecError(str(exc), exc.hint, loc=inner) from None
    return {k: resolve_argument(v, loc + (k,), k if isinstance(k, str) else None) for k, v in value.items()}


def resolve_layer(spec: Any, loc: Loc = ()) -> Any:
    """A layer instance, built with `keras.layers.deserialize` (or an imported class)."""
    name, kwargs, keras_dict = split_spec(spec)
    if ":" in name:
        layer = call_with_kwargs(import_object(name), kwargs, "layer")
    else:
        if name in ("Input", "InputLayer"):  # Keras's way to declare an input; kerasrun's is model.inputs (named, with their shapes)
            shape = kwargs.get("shape", kwargs.get("batch_shape", "[…]"))
            raise SpecError(
                "inputs are declared in model.inputs, not as a layer",
                hint=f"model: {{inputs: {{x: {list(shape) if isinstance(shape, (list, tuple)) else shape}}}, layers: [...]}} — drop this entry",
            )
        if keras_dict is None and name not in public_names(keras.layers, keras.layers.Layer):
            raise SpecError(f"unknown layer `{name}`", hint=suggest(name, public_names(keras.layers, keras.layers.Layer)))
        kwargs = resolve_nested(kwargs, loc + ((name,) if keras_dict is None else ("config",)))
        try:
            if keras_dict is None:  # the shorthand: the class with these arguments, the rest Keras's defaults (as in Python)
                layer = getattr(keras.layers, name)(**kwargs)
            else:  # Keras's own serialization: from_config, as keras.saving would
                layer = keras.layers.deserialize({"module": "keras.layers", "class_name": name} | keras_dict | {"config": kwargs})
        except (TypeError, ValueError, KeyError) as exc:
            raise SpecError(
                f"Keras rejected the arguments of {name}: {exc}", loc=loc, hint=argument_hint(getattr(keras.layers, name), kwargs)
            ) from None
    if not isinstance(layer, keras.layers.Layer):
        raise SpecError(f"`{name}` did not give a keras.layers.Layer (got {type(layer).__name__})")
    return layer


def resolve_callback(spec: Any, run_dir: Path | None = None, loc: Loc = ()) -> Any:
    """A callback instance, its arguments resolved (schedules by import path, Keras objects); relative file arguments go into the run folder."""
    name, kwargs, _ = split_spec(spec)
    if run_dir is not None:
        for key in CALLBACK_PATH_KEYS:
            if isinstance(kwargs.get(key), str) and not Path(kwargs[key]).is_absolute():
                kwargs[key] = str(run_dir / kwargs[key])
            if isinstance(kwargs.get(key), str) and kwargs[key]:
                # `logs/train.csv`: CSVLogger opens its file without making the folder (checked before training: it can be made).
                Path(kwargs[key]).expanduser().parent.mkdir(parents=True, exist_ok=True)
    if ":" in name:
        obj = import_object(name)
    else:
        known = public_names(keras.callbacks, keras.callbacks.Callback)
        if name not in known:
            raise SpecError(f"unknown callback `{name}`", hint=suggest(name, known))
        obj = getattr(keras.callbacks, name)
    callback = call_with_kwargs(obj, resolve_nested(kwargs, loc + (name,)), "callback")
    if not isinstance(callback, keras.callbacks.Callback):
        raise SpecError(f"`{name}` is not a keras.callbacks.Callback")
    return callback


def config_objects(config: Any) -> dict[str, Any]:
    """Every `module:name` the config imports, by name: custom layers, losses and metrics a saved model needs."""
    found: dict[str, Any] = {}
    problems = []
    for path in import_paths(config):
        try:
            obj = import_object(path)
        except SpecError as exc:
            problems.append(
                config.problem(
                    (),
                    f"`{path}` (named in the config) cannot be imported: {exc}",
                    "run kerasrun from the folder it was trained in, or put the module on PYTHONPATH",
                )
            )
            continue
        found[getattr(obj, "__name__", path.split(":")[1])] = obj
    if problems:
        raise ConfigError(problems)
    return found


def resolve_each(specs: list[Any], loc: Loc, resolve: Callable[..., Any], config: Any, collector: Collector) -> list[Any]:
    """Resolve a list of specs, collecting a located problem for each one that fails."""
    out = []
    takes_loc = "loc" in inspect.signature(resolve).parameters  # resolvers that locate problems inside a spec
    for index, spec in enumerate(specs):
        item_loc = loc + (index,)
        try:
            out.append(resolve(spec, loc=item_loc) if takes_loc else resolve(spec))
        except SpecError as exc:
            collector.add(config.problem(exc.loc or item_loc, str(exc), exc.hint))
    return out


def resolve_one(spec: Any, loc: Loc, resolve: Callable[..., Any], config: Any, collector: Collector) -> Any:
    """Resolve one spec, collecting a located problem when it fails."""
    try:
        return resolve(spec, loc=loc) if "loc" in inspect.signature(resolve).parameters else resolve(spec)
    except SpecError as exc:
        collector.add(config.problem(exc.loc or loc, str(exc), exc.hint))
        return None


def problem_from(config: Any, loc: Loc, exc: Exception) -> Problem:
    """A located problem from any exception raised while building."""
    return config.problem(loc, f"{type(exc).__name__}: {exc}")
