"""Providers: ``providers.d/*.conf`` files in Karbor's format, loaded into a registry.

A provider file has a ``[provider]`` section (``name``, ``description``, ``id``
(UUID), repeated ``plugin =`` lines, ``bank =``, ``enabled``) and one section per
plugin, bank and block backend it names, holding that component's options.
Values may use ``{state_dir}``, replaced by the absolute state directory.

Anything wrong stops start-up with a :class:`ProviderConfigError` naming the
file, the section and the key.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import threading
import uuid
from collections.abc import Mapping
from typing import Any

import jsonschema

from strongroom import exceptions, plugins
from strongroom.bank_plugins import Bank
from strongroom.bank_plugins.keyring import KekSource, Keyring
from strongroom.bank_plugins.lease import LeaseWindows
from strongroom.bank_plugins.retry import RetryingBank
from strongroom.block import BlockBackend
from strongroom.protection.plugin import (
    PluginEnvironment,
    ProtectableEnvironment,
    ProtectablePlugin,
    ProtectionPlugin,
)

_PROVIDER_KEYS = {"name", "description", "id", "plugin", "bank", "enabled", "encryption"}
#: ``[provider] encryption``: new checkpoints sealed (the default) or written clear.
ENCRYPTION_CHOICES = {"aes-256-gcm": True, "none": False}
_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


@dataclasses.dataclass
class IniFile:
    """A parsed INI file that keeps repeated keys and line numbers."""

    path: str
    sections: dict[str, dict[str, list[str]]]
    lines: dict[tuple[str, str], int]

    def error(self, section: str, key: str, reason: str) -> exceptions.ProviderConfigError:
        line = self.lines.get((section, key))
        where = f"{self.path}:{line}" if line else self.path
        return exceptions.ProviderConfigError(path=where, section=section, key=key, reason=reason)

    def single(self, section: str, key: str, required: bool = True, default: str = "") -> str:
        values = self.sections.get(section, {}).get(key)
        if not values:
            if required:
                raise self.error(section, key, "is required")
            return default
        if len(values) > 1:
            raise self.error(section, key, "is given more than once")
        return values[0]


def parse_ini(path: str, substitutions: Mapping[str, str] | None = None) -> IniFile:
    sections: dict[str, dict[str, list[str]]] = {}
    lines: dict[tuple[str, str], int] = {}
    current: str | None = None
    with open(path, encoding="utf-8") as fh:
        for number, raw in enumerate(fh, start=1):
            line = raw.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("["):
                if not line.endswith("]") or len(line) < 3:
                    raise exceptions.ProviderConfigError(path=f"{path}:{number}", section=line, key="-",
                                                         reason="malformed section header")
                current = line[1:-1].strip()
                sections.setdefault(current, {})
                continue
            if "=" not in line:
                raise exceptions.ProviderConfigError(path=f"{path}:{number}", section=current or "-",
                                                     key=line, reason="expected 'key = value'")
            if current is None:
                raise exceptions.ProviderConfigError(path=f"{path}:{number}", section="-", key=line,
                                                     reason="option outside any section")
            key, value = (part.strip() for part in line.split("=", 1))
            for name, sub in (substitutions or {}).items():
                value = value.replace("{" + name + "}", sub)
            sections[current].setdefault(key, []).append(value)
            lines.setdefault((current, key), number)
    return IniFile(path=path, sections=sections, lines=lines)


def coerce_options(ini: IniFile, section: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    """Turn a section's strings into typed options and validate them against ``schema``."""
    raw = ini.sections.get(section, {})
    props: Mapping[str, Any] = schema.get("properties", {})
    out: dict[str, Any] = {}
    for key, values in raw.items():
        if len(values) > 1:
            raise ini.error(section, key, "is given more than once")
        out[key] = _coerce(ini, section, key, values[0], props.get(key, {}).get("type"))
    validator = jsonschema.Draft202012Validator(dict(schema))
    errors = sorted(validator.iter_errors(out), key=lambda e: list(e.path))
    if errors:
        err = errors[0]
        key = str(err.path[0]) if err.path else _missing_key(err) or "-"
        if err.validator == "additionalProperties":
            extra = sorted(set(out) - set(props))
            key = extra[0] if extra else key
            raise ini.error(section, key, "unknown option")
        if _is_secret(key, props.get(key, {})):
            raise ini.error(section, key, "has an invalid value (not shown: it is a secret)")
        raise ini.error(section, key, err.message)
    return out


_SECRET_WORDS = ("password", "secret", "token", "key")


def _is_secret(name: str, schema: Mapping[str, Any]) -> bool:
    """Options whose values never appear in messages: ``writeOnly`` in their schema, or a secret's name."""
    return bool(schema.get("writeOnly")) or any(word in name.lower().split("_") for word in _SECRET_WORDS)


def _missing_key(err: jsonschema.ValidationError) -> str | None:
    if err.validator == "required" and isinstance(err.message, str) and "'" in err.message:
        return err.message.split("'")[1]
    return None


def _coerce(ini: IniFile, section: str, key: str, value: str, kind: Any) -> Any:
    kinds = kind if isinstance(kind, list) else [kind]
    if "integer" in kinds:
        try:
            return int(value)
        except ValueError:
            raise ini.error(section, key, f"{value!r} is not an integer") from None
    if "number" in kinds:
        try:
            return float(value)
        except ValueError:
            raise ini.error(section, key, f"{value!r} is not a number") from None
    if "boolean" in kinds:
        lowered = value.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ini.error(section, key, f"{value!r} is not a boolean")
    return value


class Provider:
    """One provider: its bank, its protection plugins and their block backends."""

    def __init__(self, ini: IniFile, bank_retry: Mapping[str, Any] | None = None,
                 kek: KekSource | None = None) -> None:
        self.path = ini.path
        self.kek = kek
        self.bank_retry = dict(bank_retry or {})
        self.ini = ini
        section = "provider"
        unknown = sorted(set(ini.sections.get(section, {})) - _PROVIDER_KEYS)
        if section not in ini.sections:
            raise ini.error(section, "-", "the [provider] section is missing")
        if unknown:
            raise ini.error(section, unknown[0], "unknown option")
        self.name = ini.single(section, "name")
        self.description = ini.single(section, "description", required=False)
        raw_id = ini.single(section, "id")
        try:
            self.id = str(uuid.UUID(raw_id))
        except ValueError:
            raise ini.error(section, "id", f"{raw_id!r} is not a UUID") from None
        enabled = ini.single(section, "enabled", required=False, default="true").lower()
        if enabled not in _TRUE | _FALSE:
            raise ini.error(section, "enabled", f"{enabled!r} is not a boolean")
        self.enabled = enabled in _TRUE
        encryption = ini.single(section, "encryption", required=False, default="aes-256-gcm").lower()
        if encryption not in ENCRYPTION_CHOICES:
            raise ini.error(section, "encryption", f"{encryption!r} is not one of {', '.join(ENCRYPTION_CHOICES)}")
        self.encryption = encryption
        self.bank_name = ini.single(section, "bank")
        self.plugin_names = ini.sections[section].get("plugin", [])
        if not self.plugin_names:
            raise ini.error(section, "plugin", "at least one protection plugin is required")
        self._lock = threading.Lock()
        self._bank: Bank | None = None
        self._backends: dict[str, BlockBackend] = {}
        self.bank_class = self._load(plugins.BANKS, self.bank_name, "bank")
        self.bank_options = coerce_options(ini, self.bank_name,
                                           getattr(self.bank_class, "options_schema", {"type": "object"}))
        try:
            self.bank_class.check_options(self.bank_options)
        except exceptions.ConfigError as err:
            raise ini.error(self.bank_name, str(err.kwargs.get("key", "-")), str(err)) from None
        try:
            self.lease_windows = LeaseWindows.from_options(self.bank_options)
        except exceptions.LeaseWindowError as err:
            raise ini.error(self.bank_name, err.kwargs["key"], err.kwargs["reason"]) from None
        env = PluginEnvironment(provider_id=self.id, provider_file=self.path,
                                block_backends=self.block_backend)
        self.plugins: dict[str, ProtectionPlugin] = {}
        self.plugin_for_type: dict[str, ProtectionPlugin] = {}
        for name in self.plugin_names:
            cls = self._load(plugins.PROTECTIONS, name, "plugin")
            options = coerce_options(ini, name, cls.config_schema)
            plugin = cls(options, env)
            self.plugins[name] = plugin
            for rtype in cls.supported_resource_types:
                if rtype in self.plugin_for_type:
                    raise ini.error(section, "plugin", f"two plugins protect {rtype}")
                self.plugin_for_type[rtype] = plugin
        # Block backends named by plugins are checked now, not on first use.
        for name, plugin in self.plugins.items():
            backend_name = plugin.options.get("block_backend")
            if backend_name:
                try:
                    self.block_backend(str(backend_name))
                except exceptions.ProviderConfigError:
                    raise
                except exceptions.StrongroomError as err:
                    raise ini.error(name, "block_backend", str(err)) from err

    def _load(self, group: str, name: str, key: str) -> type[Any]:
        try:
            return plugins.load_class(group, name, source=self.path)
        except exceptions.PluginLoadError as err:
            raise self.ini.error("provider", key, str(err)) from err

    # -- components ------------------------------------------------------

    @property
    def bank_description(self) -> str:
        """How messages name this provider's bank: ``bank 'swift' of provider 'Cloud'``."""
        return f"bank {self.bank_name!r} of provider {self.name!r}"

    @property
    def bank(self) -> Bank:
        """The bank (transient failures retried with backoff), constructed on first use.

        Raises ``ServiceUnavailable`` naming it if the plugin cannot be constructed.
        """
        with self._lock:
            if self._bank is None:
                try:
                    plugin = RetryingBank(self.bank_class(self.bank_options), **self.bank_retry,
                                          name=self.bank_description)
                except (exceptions.StrongroomError, OSError) as err:
                    raise exceptions.ServiceUnavailable(what=self.bank_description, reason=str(err)) from err
                self._bank = Bank(plugin, name=self.bank_name)
                if self.kek is not None:  # without one (tests of the parts) nothing is sealed or unsealed
                    self._bank.keyring = Keyring(self._bank, self.kek, name=self.bank_description)
                    self._bank.encrypt = ENCRYPTION_CHOICES[self.encryption]
            return self._bank

    def block_backend(self, name: str) -> BlockBackend:
        with self._lock:
            backend = self._backends.get(name)
            if backend is None:
                cls = plugins.load_class(plugins.BLOCK_BACKENDS, name, source=self.path)
                options = coerce_options(self.ini, name, getattr(cls, "options_schema", {"type": "object"}))
                backend = cls(options)
                self._backends[name] = backend
            return backend

    def block_backends(self) -> dict[str, BlockBackend]:
        for plugin in self.plugins.values():
            name = plugin.options.get("block_backend")
            if name:
                self.block_backend(str(name))
        with self._lock:
            return dict(self._backends)

    def plugin_for(self, resource_type: str) -> ProtectionPlugin:
        try:
            return self.plugin_for_type[resource_type]
        except KeyError:
            raise exceptions.InvalidInput(
                reason=f"provider {self.name} ({self.id}) has no protection plugin for {resource_type}") from None

    def extended_info_schema(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {
            "options_schema": {}, "restore_schema": {}, "saved_info_schema": {}, "verify_schema": {}}
        for rtype, plugin in sorted(self.plugin_for_type.items()):
            for key in out:
                out[key][rtype] = getattr(plugin, key)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "description": self.description,
                "extended_info_schema": self.extended_info_schema()}

    def close(self) -> None:
        with self._lock:
            if self._bank is not None:
                self._bank.close()
            for backend in self._backends.values():
                backend.close()


class ProviderRegistry:
    """Every enabled provider plus the protectable plugins, loaded once at start-up."""

    def __init__(self, providers: list[Provider], protectables: dict[str, ProtectablePlugin]) -> None:
        self._providers = {p.id: p for p in providers}
        self.protectables = protectables

    @classmethod
    def load(cls, directory: str, state_dir: str, bank_retry: Mapping[str, Any] | None = None,
             kek: KekSource | None = None) -> ProviderRegistry:
        """Every ``*.conf`` in ``directory``; ``bank_retry`` holds :class:`RetryingBank` keyword arguments;
        ``kek`` is where the banks' key-encryption keys are (None: banks neither seal nor unseal)."""
        if not os.path.isdir(directory):
            raise exceptions.ConfigError(reason=f"providers directory {directory!r} does not exist")
        substitutions = {"state_dir": os.path.abspath(state_dir)}
        providers: list[Provider] = []
        seen: dict[str, str] = {}
        for path in sorted(glob.glob(os.path.join(directory, "*.conf"))):
            ini = parse_ini(path, substitutions)
            provider = Provider(ini, bank_retry, kek)
            if provider.id in seen:
                raise ini.error("provider", "id", f"duplicate provider id {provider.id} (also in {seen[provider.id]})")
            seen[provider.id] = path
            if provider.enabled:
                providers.append(provider)
        registry = cls(providers, {})
        registry.protectables = load_protectables(registry)
        return registry

    def get(self, provider_id: str) -> Provider:
        try:
            return self._providers[provider_id]
        except KeyError:
            raise exceptions.NotFound(kind="Provider", id=provider_id) from None

    def providers(self) -> list[Provider]:
        return sorted(self._providers.values(), key=lambda p: (p.name, p.id))

    def block_backends(self) -> dict[str, BlockBackend]:
        out: dict[str, BlockBackend] = {}
        for provider in self.providers():
            for name, backend in provider.block_backends().items():
                existing = out.get(name)
                if existing is None or existing.options == backend.options:
                    out.setdefault(name, backend)
                else:
                    out[f"{name}@{provider.name}"] = backend
        return out

    def protectable(self, resource_type: str) -> ProtectablePlugin:
        try:
            return self.protectables[resource_type]
        except KeyError:
            raise exceptions.NotFound(kind="Protectable type", id=resource_type) from None

    def dependent_types(self, resource_type: str) -> list[str]:
        return sorted(t for t, p in self.protectables.items() if resource_type in p.parent_types)

    def close(self) -> None:
        for provider in self._providers.values():
            provider.close()


def load_protectables(registry: ProviderRegistry) -> dict[str, ProtectablePlugin]:
    env = ProtectableEnvironment(block_backends=registry.block_backends)
    out: dict[str, ProtectablePlugin] = {}
    for name in plugins.names(plugins.PROTECTABLES):
        cls = plugins.load_class(plugins.PROTECTABLES, name)
        plugin = cls(env)
        out[plugin.resource_type] = plugin
    return out
