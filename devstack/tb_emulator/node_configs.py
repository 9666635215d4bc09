"""Rule node configurations as ThingsBoard reads them, per ThingsBoard version.

Three things ThingsBoard does with a node, all reproduced here:

- **Saving a chain** (``POST /api/ruleChain/metadata``, and an import, which is a save):
  ``DefaultTbRuleChainService.updateRuleNodeConfiguration`` upgrades a node whose
  ``configurationVersion`` is below its class's ``@RuleNode(version)`` with the class's
  ``upgrade(fromVersion, config)`` (``TbNodeUpgradeUtils.upgradeConfigurationAndVersion``), and
  ``BaseRuleChainService.saveRuleChainMetaData`` rewrites ``singletonMode`` and the debug settings,
  then refuses a node whose name or configuration breaks a bean-validation constraint
  (``RuleChainDataValidator.validateRuleNode``; a configuration that does not even bind is let
  through there). A node whose ``configurationVersion`` is newer than its class's is stored as sent.
  :func:`save_rule_node`.
- **Starting the node**: ``init`` reads the configuration with ``TbNodeUtils.convert`` (Jackson,
  :mod:`jackson`); a configuration that does not bind fails the node. :func:`read_configuration`,
  then the node class's own checks (``nodes.py``).
- **The configuration classes**, one typed model each below, citing the Java class.

Sources, thingsboard/thingsboard @v4.3.0.1 and @dfe65d5 (identical unless a version is named):
application/.../service/rule/DefaultTbRuleChainService.java, application/.../utils/TbNodeUpgradeUtils.java,
dao/.../dao/rule/BaseRuleChainService.java, dao/.../service/validator/RuleChainDataValidator.java,
dao/.../dao/entity/AbstractEntityService.java (updateDebugSettings), and each node class under
rule-engine/rule-engine-components/src/main/java/org/thingsboard/rule/engine/.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field, model_validator

from devstack.tb_emulator.jackson import (
    JavaBean,
    JBool,
    JInt,
    JList,
    JLong,
    JObject,
    JString,
    JStringMap,
    LenientJavaBean,
    java_enum,
    java_int,
    read,
)
from devstack.tb_emulator.versions import TbVersion

_PKG = "org.thingsboard.rule.engine."


# ---------------------------------------------------------------- enums the configurations use


class OriginatorSource(Enum):
    """rule-engine-components .../transform/OriginatorSource.java"""

    CUSTOMER = "CUSTOMER"
    TENANT = "TENANT"
    RELATED = "RELATED"
    ALARM_ORIGINATOR = "ALARM_ORIGINATOR"
    ENTITY = "ENTITY"


class EntitySearchDirection(Enum):
    """common/data .../relation/EntitySearchDirection.java"""

    FROM = "FROM"
    TO = "TO"


# common/data .../common/data/EntityType.java, in declaration order (Jackson also takes the index)
EntityType = Enum(
    "EntityType",
    "TENANT CUSTOMER USER DASHBOARD ASSET DEVICE ALARM RULE_CHAIN RULE_NODE ENTITY_VIEW WIDGETS_BUNDLE "
    "WIDGET_TYPE TENANT_PROFILE DEVICE_PROFILE ASSET_PROFILE API_USAGE_STATE TB_RESOURCE OTA_PACKAGE EDGE "
    "RPC QUEUE NOTIFICATION_TARGET NOTIFICATION_TEMPLATE NOTIFICATION_REQUEST NOTIFICATION "
    "NOTIFICATION_RULE QUEUE_STATS OAUTH2_CLIENT DOMAIN MOBILE_APP MOBILE_APP_BUNDLE CALCULATED_FIELD JOB "
    "ADMIN_SETTINGS AI_MODEL API_KEY",
)


class ScriptLanguage(Enum):
    """common/data .../script/ScriptLanguage.java"""

    JS = "JS"
    TBEL = "TBEL"


def _enum(enum: type[Enum]) -> BeforeValidator:
    return BeforeValidator(java_enum(enum))


# ---------------------------------------------------------------- configuration classes


class EmptyNodeConfiguration(JavaBean):
    """rule-engine-api .../api/EmptyNodeConfiguration.java (the switch nodes)."""

    JAVA_CLASS = _PKG + "api.EmptyNodeConfiguration"
    version: JInt = 0


class RelationEntityTypeFilter(JavaBean):
    """common/data .../relation/RelationEntityTypeFilter.java"""

    JAVA_CLASS = "org.thingsboard.server.common.data.relation.RelationEntityTypeFilter"
    relation_type: JString = None
    entity_types: Annotated[list[Annotated[Any, _enum(EntityType)]] | None, JList] = None
    negate: JBool = False


class RelationsQuery(JavaBean):
    """rule-engine-components .../data/RelationsQuery.java"""

    JAVA_CLASS = _PKG + "data.RelationsQuery"
    direction: Annotated[EntitySearchDirection | None, _enum(EntitySearchDirection)] = None
    max_level: JInt = 1
    filters: Annotated[list[Annotated[RelationEntityTypeFilter | None, JObject]] | None, JList] = None
    fetch_last_level_only: JBool = False


class ChangeOriginatorConfiguration(JavaBean):
    """rule-engine-components .../transform/TbChangeOriginatorNodeConfiguration.java"""

    JAVA_CLASS = _PKG + "transform.TbChangeOriginatorNodeConfiguration"
    originator_source: Annotated[OriginatorSource | None, _enum(OriginatorSource)] = None
    relations_query: Annotated[RelationsQuery | None, JObject] = None
    entity_type: JString = None
    entity_name_pattern: JString = None


class SendRpcRequestConfiguration(JavaBean):
    """rule-engine-components .../rpc/TbSendRpcRequestNodeConfiguration.java"""

    JAVA_CLASS = _PKG + "rpc.TbSendRpcRequestNodeConfiguration"
    timeout_in_seconds: JInt = 0


class SendRpcReplyConfiguration(JavaBean):
    """rule-engine-components .../rpc/TbSendRpcReplyNodeConfiguration.java (getters default empty keys)."""

    JAVA_CLASS = _PKG + "rpc.TbSendRpcReplyNodeConfiguration"
    service_id_meta_data_attribute: JString = None
    session_id_meta_data_attribute: JString = None
    request_id_meta_data_attribute: JString = None

    @property
    def service_id_key(self) -> str:
        return self.service_id_meta_data_attribute or "serviceId"

    @property
    def session_id_key(self) -> str:
        return self.session_id_meta_data_attribute or "sessionId"

    @property
    def request_id_key(self) -> str:
        return self.request_id_meta_data_attribute or "requestId"


# Processing settings of the save nodes (rule-engine-components .../telemetry/settings/ and
# .../telemetry/strategy/): polymorphic on "type", records that take no other property.

_MIN_DEDUPLICATION_S, _MAX_DEDUPLICATION_S = 1, 86_400  # DeduplicateProcessingStrategy: 1 s .. 1 day


def _deduplication_interval(secs: int) -> None:
    if not _MIN_DEDUPLICATION_S <= secs <= _MAX_DEDUPLICATION_S:
        raise ValueError(
            f"Deduplication interval must be at least {_MIN_DEDUPLICATION_S} second(s) and at most "
            f"{_MAX_DEDUPLICATION_S} second(s), was {secs} second(s)"
        )


class OnEveryMessageStrategy(JavaBean):
    JAVA_CLASS = _PKG + "telemetry.strategy.OnEveryMessageProcessingStrategy"
    type: Literal["ON_EVERY_MESSAGE"]


class SkipStrategy(JavaBean):
    JAVA_CLASS = _PKG + "telemetry.strategy.SkipProcessingStrategy"
    type: Literal["SKIP"]


class DeduplicateStrategy(JavaBean):
    JAVA_CLASS = _PKG + "telemetry.strategy.DeduplicateProcessingStrategy"
    type: Literal["DEDUPLICATE"]
    deduplication_interval_secs: JInt = 0

    @model_validator(mode="after")
    def _interval(self) -> DeduplicateStrategy:
        _deduplication_interval(self.deduplication_interval_secs)
        return self


ProcessingStrategy = Annotated[
    OnEveryMessageStrategy | SkipStrategy | DeduplicateStrategy, Field(discriminator="type")
]


class OnEveryMessage(JavaBean):
    JAVA_CLASS = _PKG + "telemetry.settings.ProcessingSettings$OnEveryMessage"
    type: Literal["ON_EVERY_MESSAGE"]


class WebSocketsOnly(JavaBean):
    JAVA_CLASS = _PKG + "telemetry.settings.ProcessingSettings$WebSocketsOnly"
    type: Literal["WEBSOCKETS_ONLY"]


class Deduplicate(JavaBean):
    JAVA_CLASS = _PKG + "telemetry.settings.ProcessingSettings$Deduplicate"
    type: Literal["DEDUPLICATE"]
    deduplication_interval_secs: JInt = 0
    processing_strategy: Any = Field(default=None, exclude=True)  # @JsonIgnore: skipped if sent

    @model_validator(mode="after")
    def _interval(self) -> Deduplicate:
        _deduplication_interval(self.deduplication_interval_secs)
        return self


class TimeseriesAdvanced(JavaBean):
    """TimeseriesProcessingSettings.Advanced: every strategy required (Objects.requireNonNull)."""

    JAVA_CLASS = _PKG + "telemetry.settings.TimeseriesProcessingSettings$Advanced"
    type: Literal["ADVANCED"]
    timeseries: ProcessingStrategy
    latest: ProcessingStrategy
    web_sockets: ProcessingStrategy
    calculated_fields: ProcessingStrategy


class AttributesAdvanced(JavaBean):
    JAVA_CLASS = _PKG + "telemetry.settings.AttributesProcessingSettings$Advanced"
    type: Literal["ADVANCED"]
    attributes: ProcessingStrategy
    web_sockets: ProcessingStrategy
    calculated_fields: ProcessingStrategy


TimeseriesProcessingSettings = Annotated[
    OnEveryMessage | WebSocketsOnly | Deduplicate | TimeseriesAdvanced, Field(discriminator="type")
]
AttributesProcessingSettings = Annotated[
    OnEveryMessage | WebSocketsOnly | Deduplicate | AttributesAdvanced, Field(discriminator="type")
]
_ON_EVERY_MESSAGE = {"type": "ON_EVERY_MESSAGE"}


class TimeseriesConfiguration(JavaBean):
    """rule-engine-components .../telemetry/TbMsgTimeseriesNodeConfiguration.java"""

    JAVA_CLASS = _PKG + "telemetry.TbMsgTimeseriesNodeConfiguration"
    default_ttl: JLong = Field(default=0, alias="defaultTTL")
    use_server_ts: JBool = False
    processing_settings: Annotated[TimeseriesProcessingSettings | None, JObject] = None  # @NotNull

    def constraint_violations(self) -> list[str]:
        return [] if self.processing_settings is not None else ["processingSettings must not be null"]

    @staticmethod
    def default_configuration() -> dict[str, Any]:
        return {"defaultTTL": 0, "useServerTs": False, "processingSettings": dict(_ON_EVERY_MESSAGE)}


class AttributesConfiguration(JavaBean):
    """rule-engine-components .../telemetry/TbMsgAttributesNodeConfiguration.java"""

    JAVA_CLASS = _PKG + "telemetry.TbMsgAttributesNodeConfiguration"
    processing_settings: Annotated[AttributesProcessingSettings | None, JObject] = None  # @NotNull
    scope: JString = None
    notify_device: JBool = False
    send_attributes_updated_notification: JBool = False
    update_attributes_only_on_value_change: JBool = False

    def constraint_violations(self) -> list[str]:
        return [] if self.processing_settings is not None else ["processingSettings must not be null"]

    @staticmethod
    def default_configuration() -> dict[str, Any]:
        return {
            "processingSettings": dict(_ON_EVERY_MESSAGE),
            "scope": "SERVER_SCOPE",
            "notifyDevice": False,
            "sendAttributesUpdatedNotification": False,
            "updateAttributesOnlyOnValueChange": True,
        }


class LogConfiguration(JavaBean):
    """rule-engine-components .../action/TbLogNodeConfiguration.java"""

    JAVA_CLASS = _PKG + "action.TbLogNodeConfiguration"
    script_lang: Annotated[ScriptLanguage | None, _enum(ScriptLanguage)] = None
    js_script: JString = None
    tbel_script: JString = None

    # defaultConfiguration(): the one script TbLogNode.isStandard() recognises and never runs
    STANDARD_SCRIPT: ClassVar[str] = (
        "return '\\nIncoming message:\\n' + JSON.stringify(msg) + "
        "'\\nIncoming metadata:\\n' + JSON.stringify(metadata);"
    )


# REST API call node credentials (rule-engine-components .../credentials/ClientCredentials.java):
# polymorphic on "type"; every implementation ignores unknown properties.


class AnonymousCredentials(LenientJavaBean):
    JAVA_CLASS = _PKG + "credentials.AnonymousCredentials"
    type: Literal["anonymous"]


class BasicCredentials(LenientJavaBean):
    JAVA_CLASS = _PKG + "credentials.BasicCredentials"
    type: Literal["basic"]
    username: JString = None
    password: JString = None


class SasCredentials(LenientJavaBean):
    """AzureIotHubSasCredentials: typed no further, the emulator refuses it (no TLS client certificates)."""

    JAVA_CLASS = _PKG + "credentials.AzureIotHubSasCredentials"
    type: Literal["sas"]


class CertPemCredentials(LenientJavaBean):
    """CertPemCredentials: typed no further, the emulator refuses it (no TLS client certificates)."""

    JAVA_CLASS = _PKG + "credentials.CertPemCredentials"
    type: Literal["cert.PEM"]


ClientCredentials = Annotated[
    AnonymousCredentials | BasicCredentials | SasCredentials | CertPemCredentials,
    Field(discriminator="type"),
]


class RestApiCallConfiguration43(LenientJavaBean):
    """rule-engine-components .../rest/TbRestApiCallNodeConfiguration.java @v4.3.0.1:
    ``@JsonIgnoreProperties(ignoreUnknown = true)``."""

    JAVA_CLASS = _PKG + "rest.TbRestApiCallNodeConfiguration"
    rest_endpoint_url_pattern: JString = None
    request_method: JString = None
    headers: JStringMap = None
    use_simple_client_http_factory: JBool = False
    read_timeout_ms: JInt = 0
    max_parallel_requests_count: JInt = 0
    parse_to_plain_text: JBool = False
    enable_proxy: JBool = False
    use_system_proxy_properties: JBool = False
    proxy_host: JString = None
    proxy_port: JInt = 0
    proxy_user: JString = None
    proxy_password: JString = None
    proxy_scheme: JString = None
    credentials: Annotated[ClientCredentials | None, JObject] = None
    ignore_request_body: JBool = False
    max_in_memory_buffer_size_in_kb: JInt = 0

    def constraint_violations(self) -> list[str]:
        return []

    @staticmethod
    def default_configuration() -> dict[str, Any]:
        return {
            "restEndpointUrlPattern": "http://localhost/api",
            "requestMethod": "POST",
            "headers": {"Content-Type": "application/json"},
            "useSimpleClientHttpFactory": False,
            "readTimeoutMs": 0,
            "maxParallelRequestsCount": 0,
            "parseToPlainText": False,
            "enableProxy": False,
            "useSystemProxyProperties": False,
            "proxyHost": None,
            "proxyPort": 0,
            "proxyUser": None,
            "proxyPassword": None,
            "proxyScheme": None,
            "credentials": {"type": "anonymous"},
            "ignoreRequestBody": False,
            "maxInMemoryBufferSizeInKb": 256,
        }


class KeyValueEntry(JavaBean):
    """common/data .../util/KeyValueEntry.java (a record)."""

    JAVA_CLASS = "org.thingsboard.server.common.data.util.KeyValueEntry"
    key: JString = None
    value: JString = None


class RestApiCallConfiguration44(JavaBean):
    """rule-engine-components .../rest/TbRestApiCallNodeConfiguration.java @dfe65d5: unknown
    properties now fail; ``useSimpleClientHttpFactory`` and ``proxyScheme`` are gone, ``queryParams``
    and ``requestBodyTemplate`` are new, and ``isValid()`` is an @AssertTrue on the query params."""

    JAVA_CLASS = _PKG + "rest.TbRestApiCallNodeConfiguration"
    rest_endpoint_url_pattern: JString = None
    request_method: JString = None
    # null for legacy configurations: TbHttpClient keeps the old URL encoding then
    query_params: Annotated[list[Annotated[KeyValueEntry | None, JObject]] | None, JList] = None
    headers: JStringMap = None
    read_timeout_ms: JInt = 0
    max_parallel_requests_count: JInt = 0
    parse_to_plain_text: JBool = False
    enable_proxy: JBool = False
    use_system_proxy_properties: JBool = False
    proxy_host: JString = None
    proxy_port: JInt = 0
    proxy_user: JString = None
    proxy_password: JString = None
    credentials: Annotated[ClientCredentials | None, JObject] = None
    ignore_request_body: JBool = False
    request_body_template: JString = None
    max_in_memory_buffer_size_in_kb: JInt = 0
    valid: Any = Field(default=None, exclude=True)  # @JsonIgnore isValid(): skipped if sent

    def constraint_violations(self) -> list[str]:
        params = self.query_params or []
        violations = []
        if any(p is None for p in params):
            violations.append("<list element> must not be null")  # List<@NotNull KeyValueEntry>
        if any(p is None or p.key is None or p.value is None for p in params):
            violations.append("query parameter names and values must be non-null")
        return violations

    @staticmethod
    def default_configuration() -> dict[str, Any]:
        return {
            "restEndpointUrlPattern": "http://localhost/api",
            "requestMethod": "POST",
            "queryParams": [],
            "headers": {"Content-Type": "application/json"},
            "readTimeoutMs": 0,
            "maxParallelRequestsCount": 0,
            "parseToPlainText": False,
            "enableProxy": False,
            "useSystemProxyProperties": False,
            "proxyHost": None,
            "proxyPort": 0,
            "proxyUser": None,
            "proxyPassword": None,
            "credentials": {"type": "anonymous"},
            "ignoreRequestBody": False,
            "requestBodyTemplate": None,
            "maxInMemoryBufferSizeInKb": 256,
        }


RestApiCallConfiguration = RestApiCallConfiguration43 | RestApiCallConfiguration44


# ---------------------------------------------------------------- upgrade(fromVersion, config)
# Each mutates the configuration (an ObjectNode in Java) and says whether it changed anything;
# the switch falls through from fromVersion to the node's current version.


def _upgrade_timeseries(from_version: int, config: dict[str, Any]) -> bool:
    """TbMsgTimeseriesNode.upgrade (version 1): skipLatestPersistence becomes processingSettings."""
    if from_version != 0:  # the switch's default: nothing
        return False
    skip = config.get("skipLatestPersistence")
    if skip is not None and _as_text(skip) == "true":
        config["processingSettings"] = {
            "type": "ADVANCED",
            "timeseries": dict(_ON_EVERY_MESSAGE),
            "latest": {"type": "SKIP"},
            "webSockets": dict(_ON_EVERY_MESSAGE),
            "calculatedFields": dict(_ON_EVERY_MESSAGE),
        }
    else:
        config["processingSettings"] = dict(_ON_EVERY_MESSAGE)
    config.pop("skipLatestPersistence", None)
    return True


def _upgrade_attributes(from_version: int, config: dict[str, Any]) -> bool:
    """TbMsgAttributesNode.upgrade (version 3)."""
    if from_version < 0:  # the switch's default: nothing
        return False
    changed = False
    if from_version <= 0 and "updateAttributesOnlyOnValueChange" not in config:
        config["updateAttributesOnlyOnValueChange"] = False
        changed = True
    if from_version <= 1:
        for key, if_null in (
            ("notifyDevice", True),
            ("sendAttributesUpdatedNotification", False),
            ("updateAttributesOnlyOnValueChange", True),
        ):
            changed = _fix_escaped_boolean(config, key, if_null) or changed
    if from_version <= 2:
        config["processingSettings"] = dict(_ON_EVERY_MESSAGE)
        changed = True
    return changed


def _fix_escaped_boolean(config: dict[str, Any], key: str, if_null: bool) -> bool:
    value = config.get(key)
    if value is None:  # absent or null: hasNonNull is false
        config[key] = if_null
        return True
    if isinstance(value, str):  # TextNode.asBoolean(default): "true"/"false" after trim, else default
        text = value.strip()
        config[key] = True if text == "true" else False if text == "false" else if_null
        return True
    return False


def _upgrade_rest_common(from_version: int, config: dict[str, Any]) -> bool:
    """TbRestApiCallNode.upgrade cases 0..2 (both versions)."""
    if from_version < 0:  # the switch's default: nothing
        return False
    changed = False
    if from_version <= 0 and "parseToPlainText" not in config and "trimDoubleQuotes" in config:
        config["parseToPlainText"] = config.pop("trimDoubleQuotes") is True  # JsonNode.booleanValue()
        changed = True
    if from_version <= 1 and "useRedisQueueForMsgPersistence" in config:
        for key in ("useRedisQueueForMsgPersistence", "trimQueue", "maxQueueSize"):
            config.pop(key, None)
        changed = True
    if from_version <= 2 and "maxInMemoryBufferSizeInKb" not in config:
        config["maxInMemoryBufferSizeInKb"] = 256
        changed = True
    return changed


_REST_V4_KNOWN = frozenset(
    [
        "restEndpointUrlPattern",
        "requestMethod",
        "headers",
        "readTimeoutMs",
        "maxParallelRequestsCount",
        "parseToPlainText",
        "enableProxy",
        "useSystemProxyProperties",
        "proxyHost",
        "proxyPort",
        "proxyUser",
        "proxyPassword",
        "credentials",
        "ignoreRequestBody",
        "requestBodyTemplate",
        "maxInMemoryBufferSizeInKb",
    ]
)


def _upgrade_rest_44(from_version: int, config: dict[str, Any]) -> bool:
    """TbRestApiCallNode.upgrade @dfe65d5 (version 4): case 3 adds requestBodyTemplate null and drops
    every property not in its list (useSimpleClientHttpFactory, proxyScheme, ... and queryParams)."""
    changed = _upgrade_rest_common(from_version, config)
    if from_version <= 3:
        if "requestBodyTemplate" not in config:
            config["requestBodyTemplate"] = None
            changed = True
        for key in [k for k in config if k not in _REST_V4_KNOWN]:
            del config[key]
            changed = True
    return changed


def _as_text(value: Any) -> str:
    """JsonNode.asText() of a scalar."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# ---------------------------------------------------------------- the node classes, per version

Upgrade = Callable[[int, dict[str, Any]], bool]


@dataclass(frozen=True)
class NodeClass:
    """What the emulator needs of a ThingsBoard rule node class."""

    configuration: type[JavaBean]  # @RuleNode(configClazz)
    version: int = 0  # @RuleNode(version); 0: not versioned, never upgraded
    upgrade: Upgrade | None = None
    reads_configuration: bool = True  # TbMsgTypeSwitchNode.init never converts its configuration


LOG_NODE = _PKG + "action.TbLogNode"
_COMMON: dict[str, NodeClass] = {
    _PKG + "filter.TbMsgTypeSwitchNode": NodeClass(EmptyNodeConfiguration, reads_configuration=False),
    _PKG + "filter.TbDeviceTypeSwitchNode": NodeClass(EmptyNodeConfiguration),
    _PKG + "transform.TbChangeOriginatorNode": NodeClass(ChangeOriginatorConfiguration),
    _PKG + "rpc.TbSendRPCRequestNode": NodeClass(SendRpcRequestConfiguration),
    _PKG + "rpc.TbSendRPCReplyNode": NodeClass(SendRpcReplyConfiguration),
    _PKG + "telemetry.TbMsgTimeseriesNode": NodeClass(TimeseriesConfiguration, 1, _upgrade_timeseries),
    _PKG + "telemetry.TbMsgAttributesNode": NodeClass(AttributesConfiguration, 3, _upgrade_attributes),
    LOG_NODE: NodeClass(LogConfiguration),
}
REST_NODE = _PKG + "rest.TbRestApiCallNode"
NODE_CLASSES: dict[TbVersion, dict[str, NodeClass]] = {
    TbVersion.V4_3: {**_COMMON, REST_NODE: NodeClass(RestApiCallConfiguration43, 3, _upgrade_rest_common)},
    TbVersion.V4_4: {**_COMMON, REST_NODE: NodeClass(RestApiCallConfiguration44, 4, _upgrade_rest_44)},
}


# ---------------------------------------------------------------- saving a node


class RuleNodeRefused(ValueError):
    """Saving the node fails: ThingsBoard answers 400 (DataValidationException)."""


# RuleNode.name and .type: @Length(fieldName = ...) with the default max of 255
_MAX_NAME = 255
# NoXssValidator: a "{{...}}" template is refused outright (the AntiSamy HTML scan is not emulated)
_JS_TEMPLATE = re.compile(r"\{\{.*}}", re.DOTALL)
# DebugModeUtil.DEBUG_MODE_DEFAULT_DURATION_MINUTES (debug.settings.default_duration: 15)
DEBUG_ALL_MAX_MS = 15 * 60 * 1000


def configuration_version(node: dict[str, Any]) -> int:
    """RuleNode.configurationVersion: a Java int, read from the request with Jackson's coercions."""
    try:
        return java_int(node.get("configurationVersion"))
    except ValueError as exc:
        raise RuleNodeRefused(f"configurationVersion: {exc}") from None


def save_rule_node(node: dict[str, Any], version: TbVersion, now_ms: int) -> dict[str, Any]:
    """The node as ThingsBoard ``version`` stores it (ids and times aside), or RuleNodeRefused."""
    saved = copy.deepcopy(node)
    node_class = NODE_CLASSES[version].get(str(saved.get("type")))
    # setSingletonMode: the emulated classes are ComponentClusteringMode.ENABLED -> false, and so
    # is a class ThingsBoard cannot load
    saved["singletonMode"] = False
    from_version = configuration_version(saved)
    saved["configurationVersion"] = from_version
    if node_class is not None and node_class.version > from_version:
        _upgrade(saved, node_class, from_version)
    _update_debug_settings(saved, now_ms)
    _validate(saved, node_class)
    return saved


def _upgrade(node: dict[str, Any], node_class: NodeClass, from_version: int) -> None:
    """TbNodeUpgradeUtils.upgradeConfigurationAndVersion."""
    config = node.get("configuration")
    default = getattr(node_class.configuration, "default_configuration", None)
    if not isinstance(config, dict):  # "not a json object": the class's default configuration
        node["configuration"] = default() if default is not None else None
    elif node_class.upgrade is not None:
        upgraded = copy.deepcopy(config)
        if node_class.upgrade(from_version, upgraded):
            node["configuration"] = upgraded
    node["configurationVersion"] = node_class.version


def _update_debug_settings(node: dict[str, Any], now_ms: int) -> None:
    """AbstractEntityService.updateDebugSettings; RuleNode never writes debugMode back out."""
    until = now_ms + DEBUG_ALL_MAX_MS
    settings = node.get("debugSettings")
    if isinstance(settings, dict):
        all_until = settings.get("allEnabledUntil") or 0
        node["debugSettings"] = {
            "failuresEnabled": bool(settings.get("failuresEnabled")),
            "allEnabled": False,
            "allEnabledUntil": until if settings.get("allEnabled") else min(int(all_until), until),
        }
    elif node.get("debugMode") is True:
        node["debugSettings"] = {"failuresEnabled": True, "allEnabled": False, "allEnabledUntil": until}
    else:
        node["debugSettings"] = None
    node.pop("debugMode", None)


def _validate(node: dict[str, Any], node_class: NodeClass | None) -> None:
    """RuleChainDataValidator.validateRuleNode: constraints on the node, then on its configuration
    if it binds (one that does not bind is not refused here: the node fails when it starts)."""
    prefix = f"'{node.get('name')}' node configuration is invalid: "
    problems = []
    for field in ("name", "type"):
        value = node.get(field)
        if isinstance(value, str) and len(value) > _MAX_NAME:
            problems.append(f"{field} length must be equal or less than {_MAX_NAME}")
    name = node.get("name")
    if isinstance(name, str) and _JS_TEMPLATE.search(name):
        problems.append("name is malformed")
    if problems:
        raise RuleNodeRefused(prefix + ", ".join(sorted(set(problems))))
    if node_class is None:
        return
    try:
        config = read(node_class.configuration, node.get("configuration"))
    except ValueError:
        return
    violations: list[str] = getattr(config, "constraint_violations", list)()
    if violations:
        raise RuleNodeRefused(prefix + ", ".join(sorted(set(violations))))


def read_configuration(node_class: NodeClass, configuration: Any) -> JavaBean:
    """TbNodeUtils.convert(configuration, configClazz); JavaBindError (a ValueError) if it does not bind."""
    return read(node_class.configuration, configuration)
