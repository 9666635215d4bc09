"""The rule node types the emulator executes, as a table from ThingsBoard class name to implementation.

Each follows its ThingsBoard class (thingsboard/thingsboard rule-engine/rule-engine-components/src/
main/java/org/thingsboard/rule/engine/<package>/<Class>.java @v4.3.0.1 and @dfe65d5, named in the
docstring) for what its ``init`` accepts, the relations it emits and the message it passes on. A
node gets its configuration as ThingsBoard's save and ``init`` leave it (node_configs.py: upgraded
to the selected ThingsBoard version, read with Jackson's rules, typed); what ``init`` refuses, or a
setting whose effect the emulator does not reproduce, is a ValueError, which stops the emulator at
start with the node named. Script nodes (TBEL/JS) are absent: the chain we ship routes with
configuration only; the stock root chain's log nodes use the one script ThingsBoard never runs.
"""

from __future__ import annotations

import asyncio
import base64
import functools
from collections import OrderedDict, deque
from collections.abc import Callable, Coroutine, Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Protocol

import orjson
import structlog

from devstack.tb_emulator import convert, gson
from devstack.tb_emulator.convert import JsonSettings, dumps
from devstack.tb_emulator.devices import DataValidationError
from devstack.tb_emulator.node_configs import (
    NODE_CLASSES,
    AnonymousCredentials,
    AttributesAdvanced,
    AttributesConfiguration,
    BasicCredentials,
    ChangeOriginatorConfiguration,
    Deduplicate,
    EmptyNodeConfiguration,
    EntityType,
    LogConfiguration,
    OriginatorSource,
    RestApiCallConfiguration,
    RestApiCallConfiguration44,
    ScriptLanguage,
    SendRpcReplyConfiguration,
    SendRpcRequestConfiguration,
    TimeseriesAdvanced,
    TimeseriesConfiguration,
    WebSocketsOnly,
    read_configuration,
    save_rule_node,
)
from devstack.tb_emulator.patterns import process_pattern
from devstack.tb_emulator.rpc import RpcResult, new_request, now_ms
from devstack.tb_emulator.rule_engine import (
    FAILURE,
    MSG_TYPE_RELATIONS,
    OTHER_RELATION,
    SUCCESS,
    Emit,
    MsgType,
    Node,
    TbMsg,
)
from devstack.tb_emulator.versions import DEFAULT_TB_VERSION, TbVersion

if TYPE_CHECKING:
    from devstack.tb_emulator.devices import Device
    from devstack.tb_emulator.rpc import RpcRequest
    from devstack.tb_emulator.webhook import HttpResult

log = structlog.get_logger("tb_emulator.nodes")


class NodeContext(Protocol):
    """What nodes may touch in the emulator (ThingsBoard's TbContext, reduced)."""

    @property
    def json_settings(self) -> JsonSettings:
        """JsonConverter's static settings (JsonConverterConfig), which the telemetry nodes use too."""

    def device_by_name(self, name: str) -> Device | None: ...
    def submit_rpc(self, device: Device, request: RpcRequest) -> None: ...
    def reply_to_client_rpc(self, session_id: str, request_id: int, payload: str) -> bool: ...
    def save_timeseries(self, device: Device, ts: int, values: dict[str, Any]) -> None: ...
    def save_attributes(self, device: Device, scope: str, values: dict[str, Any], notify: bool) -> None: ...
    def spawn(self, coro: Any) -> None: ...
    async def http(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None, timeout_s: float
    ) -> HttpResult: ...


class MsgTypeSwitch:
    """filter.TbMsgTypeSwitchNode: relation = the message type's connection name, else "Other".
    Its ``init`` never reads the configuration, so any configuration loads."""

    def __init__(self, ctx: NodeContext, config: None) -> None:
        pass

    def on_msg(self, msg: TbMsg, emit: Emit) -> None:
        emit(msg, MSG_TYPE_RELATIONS.get(msg.type, OTHER_RELATION))


class DeviceProfileSwitch:
    """filter.TbDeviceTypeSwitchNode ("device profile switch"): relation = the device profile name.
    ``init`` reads an EmptyNodeConfiguration (TbAbstractTypeSwitchNode)."""

    def __init__(self, ctx: NodeContext, config: EmptyNodeConfiguration) -> None:
        pass

    def on_msg(self, msg: TbMsg, emit: Emit) -> None:
        emit(msg, msg.originator.type)


class ChangeOriginator:
    """transform.TbChangeOriginatorNode, source ENTITY, entity type DEVICE, by name pattern.

    ``init`` runs validateConfig first (its messages), then the emulator refuses what it does not
    emulate: other sources (CUSTOMER, TENANT, RELATED, ALARM_ORIGINATOR) and entity types."""

    # EntitiesByNameAndTypeLoader.AVAILABLE_ENTITY_TYPES
    BY_NAME_TYPES = ("DEVICE", "ASSET", "ENTITY_VIEW", "EDGE", "USER")

    def __init__(self, ctx: NodeContext, config: ChangeOriginatorConfiguration) -> None:
        source = config.originator_source
        if source is None:
            raise ValueError("Originator source should be specified.")
        if source is OriginatorSource.RELATED and config.relations_query is None:
            raise ValueError("Relations query should be specified if 'Related entity' source is selected.")
        if source is OriginatorSource.ENTITY:
            if config.entity_type is None:
                raise ValueError(
                    "Entity type should be specified if 'Entity by name pattern' source is selected."
                )
            if not config.entity_name_pattern:
                raise ValueError(
                    "Name pattern should be specified if 'Entity by name pattern' source is selected."
                )
            if config.entity_type not in EntityType.__members__:  # EntityType.valueOf
                raise ValueError(
                    f"No enum constant org.thingsboard.server.common.data.EntityType.{config.entity_type}"
                )
            if config.entity_type not in self.BY_NAME_TYPES:  # checkEntityType
                raise ValueError(f"Unexpected entity type {config.entity_type}")
        if source is not OriginatorSource.ENTITY or config.entity_type != "DEVICE":
            raise ValueError(
                f"only originatorSource ENTITY with entityType DEVICE is emulated, got {source.name}"
                + (f" / {config.entity_type}" if source is OriginatorSource.ENTITY else "")
            )
        assert config.entity_name_pattern is not None
        self.ctx = ctx
        self.pattern = config.entity_name_pattern

    def on_msg(self, msg: TbMsg, emit: Emit) -> None:
        name = process_pattern(self.pattern, msg.metadata, msg.json())
        device = self.ctx.device_by_name(name)
        if device is None:
            # EntitiesByNameAndTypeLoader: "Failed to find device with name ..." -> Failure
            emit(msg, FAILURE)
            return
        emit(msg.copy(originator=device), SUCCESS)


class SendRpcRequest:
    """rpc.TbSendRPCRequestNode: data {method, params}; metadata oneway, persistent, expirationTime..."""

    def __init__(self, ctx: NodeContext, config: SendRpcRequestConfiguration) -> None:
        self.ctx = ctx
        # a Java int, 0 when absent: a request expires on arrival (expirationTime = now + timeout)
        self.timeout_s = config.timeout_in_seconds

    def on_msg(self, msg: TbMsg, emit: Emit) -> None:
        data = msg.json()
        if not isinstance(data, dict) or "method" not in data:
            emit(msg, FAILURE)  # "Method is not present in the message!"
            return
        if "params" not in data:
            emit(msg, FAILURE)  # "Params are not present in the message!"
            return
        md = msg.metadata
        expiration = md.get("expirationTime")
        retries = md.get("retries")
        request = new_request(
            method=str(data["method"]),
            params=data["params"],
            timeout_ms=self.timeout_s * 1000,
            oneway=md.get("oneway", "").lower() == "true",  # Boolean.parseBoolean
            persistent=md.get("persistent", "").lower() == "true",
            expiration_ms=int(expiration) if expiration and expiration.isdigit() else None,
            retries=int(retries) if retries and retries.isdigit() else None,
            request_uuid=md.get("requestUUID"),
            additional_info=data.get("additionalInfo"),
        )

        def done(result: RpcResult) -> None:
            # The answer is a new message on the input's queue (enqueueForTellNext/-TellFailure), with
            # the input's type, originator and metadata (requestId, sessionId, serviceId of a
            # dispatcher's client RPC survive for the reply node)
            if result.error is None:
                emit.enqueue(msg.copy(data=result.response if result.response is not None else "{}"), SUCCESS)
            else:
                error = result.error.value
                emit.enqueue(msg.copy(data=dumps({"error": error})), FAILURE, error)

        request.callbacks.append(done)
        self.ctx.submit_rpc(msg.originator, request)
        emit.ack(msg)  # done once the request is with the device actor, not when the device answers


class SendRpcReply:
    """rpc.TbSendRPCReplyNode: answer a device's client-side RPC found by service/session/request id."""

    def __init__(self, ctx: NodeContext, config: SendRpcReplyConfiguration) -> None:
        self.ctx = ctx
        self.service_key = config.service_id_key
        self.session_key = config.session_id_key
        self.request_key = config.request_id_key

    def on_msg(self, msg: TbMsg, emit: Emit) -> None:
        md = msg.metadata
        request_id = md.get(self.request_key)
        session_id = md.get(self.session_key)
        if not request_id or not md.get(self.service_key) or not session_id or not msg.data:
            emit(msg, FAILURE)
            return
        try:
            number = int(request_id)
        except ValueError:
            emit(msg, FAILURE)
            return
        self.ctx.reply_to_client_rpc(session_id, number, msg.data)
        emit(msg, SUCCESS)


class RestApiCall:
    """rest.TbRestApiCallNode and its TbHttpClient (version 3 at v4.3.0.1, 4 at dfe65d5).

    URL and headers from patterns, the message data as the body of POST, PUT and PATCH (and DELETE
    at dfe65d5) unless ``ignoreRequestBody``; ``parseToPlainText`` sends a JSON string's text
    (JacksonUtil.toPlainText). A 2xx answer goes to Success: its body (``{}`` when empty) as the data,
    metadata ``status`` (the HttpStatus name), ``statusCode``, ``statusReason`` and the response
    headers. A 3xx answer goes to Failure with those and ``error_body`` (processFailureResponse); a 4xx
    or 5xx answer to Failure with ``error``, ``status``, ``statusCode``, ``error_body``
    (WebClientResponseException in processException); a transport error with ``error`` alone.
    ``readTimeoutMs`` 0 is no read timeout (Netty's ReadTimeoutHandler). ``maxParallelRequestsCount``
    above 0 bounds the requests on the wire, the rest wait (:class:`_ActorSemaphore` at v4.3.0.1,
    :class:`_PendingQueue` at dfe65d5) instead of overflowing the connection pool's wait list, which
    fails them at once (webhook.py). Refused at start as not emulated: proxies, TLS client credentials
    (sas, cert.PEM), and at dfe65d5 a ``requestBodyTemplate`` or non-empty ``queryParams``.
    """

    # TbHttpClient.validateMaxInMemoryBufferSize: the system limit when tb.http.maxInMemoryBufferSizeInKb
    # is not set
    MAX_BUFFER_KB = 25_000
    # ReadTimeoutHandler(0) never times out; the HTTP client wants a number, so a year stands in
    NO_READ_TIMEOUT_S = 365 * 24 * 3600.0
    _BODY_METHODS_43: tuple[str, ...] = ("POST", "PUT", "PATCH")
    _BODY_METHODS_44: tuple[str, ...] = ("POST", "PUT", "PATCH", "DELETE")

    def __init__(self, ctx: NodeContext, config: RestApiCallConfiguration) -> None:
        if config.max_in_memory_buffer_size_in_kb > self.MAX_BUFFER_KB:
            raise ValueError(
                "The configured maximum in-memory buffer size (in KB) exceeds the system limit for this "
                f"parameter. The system limit is {self.MAX_BUFFER_KB} KB."
            )
        credentials = config.credentials or AnonymousCredentials(type="anonymous")
        unemulated = [
            *(["enableProxy (proxies)"] if config.enable_proxy else []),
            *(
                [f"{credentials.type} credentials"]
                if not isinstance(credentials, AnonymousCredentials | BasicCredentials)
                else []
            ),
        ]
        self.body_methods = self._BODY_METHODS_43
        if isinstance(config, RestApiCallConfiguration44):
            violations = config.constraint_violations()  # init's validateFields at dfe65d5
            if violations:
                raise ValueError(", ".join(sorted(violations)))
            if (config.request_body_template or "").strip():
                unemulated.append("requestBodyTemplate")
            if config.query_params:
                unemulated.append("queryParams")
            self.body_methods = self._BODY_METHODS_44
        if unemulated:
            raise ValueError(f"not emulated: {', '.join(unemulated)}")
        self.ctx = ctx
        self.config = config
        self.timeout_s = (
            config.read_timeout_ms / 1000 if config.read_timeout_ms > 0 else self.NO_READ_TIMEOUT_S
        )
        self.authorization = None
        if isinstance(credentials, BasicCredentials):  # prepareHeaders; Java's "+" writes null as "null"
            user_pass = f"{credentials.username}:{credentials.password}".replace("None", "null")
            self.authorization = "Basic " + base64.b64encode(user_pass.encode()).decode()
        self.buffer_limit_bytes = config.max_in_memory_buffer_size_in_kb * 1024
        parallel = config.max_parallel_requests_count
        self.limit: _ActorSemaphore | _PendingQueue | None = None
        if parallel > 0:
            self.limit = (
                _PendingQueue(self, parallel)
                if isinstance(config, RestApiCallConfiguration44)
                else _ActorSemaphore(self, parallel, config.read_timeout_ms / 1000)
            )

    def on_msg(self, msg: TbMsg, emit: Emit) -> None:
        if self.limit is None:
            if (call := self.prepare(msg, emit)) is not None:
                self.ctx.spawn(call)
        else:
            self.limit.take(msg, emit)

    def prepare(self, msg: TbMsg, emit: Emit) -> Coroutine[Any, Any, None] | None:
        """The request for ``msg``, or None when building it failed (Failure told already)."""
        config = self.config
        data = msg.json()
        method = config.request_method
        if method is None or config.rest_endpoint_url_pattern is None or config.headers is None:
            # HttpMethod.valueOf(null), processPattern(null), getHeaders().forEach: each throws
            emit(
                msg.copy(metadata={**msg.metadata, "error": "class java.lang.NullPointerException"}), FAILURE
            )
            return None
        url = process_pattern(config.rest_endpoint_url_pattern, msg.metadata, data)
        headers = {
            process_pattern(k, msg.metadata, data): process_pattern(v or "", msg.metadata, data)
            for k, v in config.headers.items()
        }
        if self.authorization is not None:
            headers["Authorization"] = self.authorization
        body = None
        if method in self.body_methods and not config.ignore_request_body:  # HttpMethod equality: exact
            if config.parse_to_plain_text:
                body = _plain_text(msg.data).encode()
            elif data is None and msg.data.strip() != "null":  # JacksonUtil.toJsonNode refuses it
                error = "class java.lang.IllegalArgumentException: The given string value cannot be "
                emit(
                    msg.copy(
                        metadata={**msg.metadata, "error": error + f"transformed to Json object: {msg.data}"}
                    ),
                    FAILURE,
                )
                return None
            else:
                body = msg.data.encode()
        return self._call(msg, emit, method, url, headers, body)

    async def _call(
        self, msg: TbMsg, emit: Emit, method: str, url: str, headers: dict[str, str], body: bytes | None
    ) -> None:
        result = await self.ctx.http(method, url, headers, body, self.timeout_s)
        metadata = dict(msg.metadata)
        code = result.status_code
        if result.error is not None or code is None:
            metadata["error"] = result.error or "no answer"
            emit(msg.copy(metadata=metadata), FAILURE)
            return
        status = _http_status(code)
        if code >= 400:  # retrieve() turns an error status into a WebClientResponseException
            metadata.update(
                error=f"class {_response_exception(code)}: {code} {status.phrase} from {method} {url}",
                status=status.phrase,
                statusCode=str(code),
                error_body=result.body,
            )
            emit(msg.copy(metadata=metadata), FAILURE)
            return
        metadata.update(status=status.name, statusCode=str(code), statusReason=status.phrase)
        metadata.update(result.headers)  # headersToMetaData
        if code >= 300:  # processFailureResponse
            metadata["error_body"] = result.body
            emit(msg.copy(metadata=metadata), FAILURE)
            return
        if len(result.body.encode()) > self.buffer_limit_bytes:
            error = "class org.springframework.core.io.buffer.DataBufferLimitException: Exceeded limit on "
            emit(
                msg.copy(
                    metadata={
                        **msg.metadata,
                        "error": error + f"max bytes to buffer : {self.buffer_limit_bytes}",
                    }
                ),
                FAILURE,
            )
            return
        emit(msg.copy(data=result.body or "{}", metadata=metadata), SUCCESS)


class _ActorSemaphore:
    """maxParallelRequestsCount at v4.3.0.1 (TbHttpClient.processMessage): the node's actor takes a
    permit with ``semaphore.tryAcquire(readTimeoutMs)`` before it builds the request, blocking there,
    so the node's later messages wait in its mailbox (and are skipped there once no longer valid, as
    RuleNodeActor does). No permit within readTimeoutMs: Failure, "Timeout during waiting for reply!".
    The permit is released by the response's or error's callback only: a request that fails while
    being built (a null URL pattern, a body that is not JSON) keeps its permit for good, as there."""

    def __init__(self, node: RestApiCall, permits: int, wait_s: float) -> None:
        self._node = node
        self._permits = asyncio.Semaphore(permits)
        self._wait_s = wait_s
        self._actor = asyncio.Lock()  # FIFO, like the actor's mailbox

    def take(self, msg: TbMsg, emit: Emit) -> None:
        self._node.ctx.spawn(self._process(msg, emit))

    async def _process(self, msg: TbMsg, emit: Emit) -> None:
        async with self._actor:
            if not emit.valid:
                return
            if not await self._acquire():
                emit(msg, FAILURE)  # tellFailure(RuntimeException("Timeout during waiting for reply!"))
                return
            call = self._node.prepare(msg, emit)
        if call is not None:
            try:
                await call
            finally:
                self._permits.release()

    async def _acquire(self) -> bool:
        if not self._permits.locked():  # tryAcquire takes a free permit at once, even with timeout 0
            await self._permits.acquire()
            return True
        if self._wait_s <= 0:
            return False
        try:
            async with asyncio.timeout(self._wait_s):
                await self._permits.acquire()
        except TimeoutError:
            return False
        return True


class _PendingQueue:
    """maxParallelRequestsCount at dfe65d5 (TbHttpClient.processMessage and tryProcess): a request
    waits in the node's pending queue (unbounded while ACTORS_RULE_EXTERNAL_HTTP_CLIENT_MAX_PENDING_REQUESTS
    is 0, its default) until one of the permits is free; the node's actor never blocks. A message
    whose pack gave up on it while waiting is dropped with Failure ("Message is no longer valid.
    Dropped from queue."); a request that fails while being built gives its permit back."""

    def __init__(self, node: RestApiCall, permits: int) -> None:
        self._node = node
        self._free = permits
        self._pending: deque[tuple[TbMsg, Emit]] = deque()

    def take(self, msg: TbMsg, emit: Emit) -> None:
        self._pending.append((msg, emit))
        self._dispatch()

    def _dispatch(self) -> None:
        while self._free > 0 and self._pending:
            msg, emit = self._pending.popleft()
            if not emit.valid:
                emit(msg, FAILURE)
                continue
            call = self._node.prepare(msg, emit)
            if call is not None:
                self._free -= 1
                self._node.ctx.spawn(self._run(call))

    async def _run(self, call: Coroutine[Any, Any, None]) -> None:
        try:
            await call
        finally:
            self._free += 1  # doFinally: the permit back, then the next pending request
            self._dispatch()


def _plain_text(data: str) -> str:
    """JacksonUtil.toPlainText: a JSON string's content, anything else as it is."""
    if len(data) >= 2 and data.startswith('"') and data.endswith('"'):
        try:
            text = orjson.loads(data)
        except orjson.JSONDecodeError:
            return data
        return text if isinstance(text, str) else data
    return data


def _http_status(code: int) -> HTTPStatus:
    try:
        return HTTPStatus(code)
    except ValueError:  # Spring's (HttpStatus) cast of an unknown code; named as ThingsBoard would fail
        return HTTPStatus.INTERNAL_SERVER_ERROR


# WebClientResponseException.create: the subclass Spring raises per status
_RESPONSE_EXCEPTIONS = {
    400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed",
    406: "NotAcceptable", 409: "Conflict", 410: "Gone", 415: "UnsupportedMediaType",
    422: "UnprocessableEntity", 429: "TooManyRequests", 500: "InternalServerError", 501: "NotImplemented",
    502: "BadGateway", 503: "ServiceUnavailable", 504: "GatewayTimeout",
}  # fmt: skip


def _response_exception(code: int) -> str:
    name = "org.springframework.web.reactive.function.client.WebClientResponseException"
    return f"{name}${_RESPONSE_EXCEPTIONS[code]}" if code in _RESPONSE_EXCEPTIONS else name


class _Deduplication:
    """DeduplicateProcessingStrategy.shouldProcess: the first message per originator per interval.

    ThingsBoard keeps at most 100 intervals (and two days' worth) in a Caffeine cache; so does this.
    """

    MAX_INTERVALS = 100
    MAX_TOTAL_S = 2 * 86_400

    def __init__(self, interval_s: int) -> None:
        self.interval_ms = interval_s * 1000
        self.max_intervals = min(self.MAX_TOTAL_S // interval_s, self.MAX_INTERVALS)
        self.seen: OrderedDict[int, set[str]] = OrderedDict()

    def first(self, ts: int, originator_id: str) -> bool:
        interval = ts // self.interval_ms
        ids = self.seen.setdefault(interval, set())
        self.seen.move_to_end(interval)
        while len(self.seen) > self.max_intervals:
            self.seen.popitem(last=False)
        if originator_id in ids:
            return False
        ids.add(originator_id)
        return True


def _processing(settings: Any) -> _Deduplication | bool:
    """A save node's processing settings: True saves, False sends to WebSockets only (nothing to
    save in the emulator), a _Deduplication decides per message. ADVANCED is not emulated."""
    if isinstance(settings, TimeseriesAdvanced | AttributesAdvanced):
        raise ValueError("not emulated: processingSettings ADVANCED")
    if isinstance(settings, Deduplicate):
        return _Deduplication(settings.deduplication_interval_secs)
    return not isinstance(settings, WebSocketsOnly)


def _metadata_ts(msg: TbMsg) -> int:
    """TbMsg.getMetaDataTs: metadata ts by Long.parseLong, else the message's own time (the
    emulator's messages carry none: now)."""
    try:
        return gson.parse_long(msg.metadata.get("ts", ""))
    except gson.NumberFormatException:
        return now_ms()


# KvUtils.validate: the key's @Length maximum, in UTF-16 units
_MAX_KEY_LENGTH = 255


def _validate_keys(keys: Iterable[str]) -> None:
    """KvUtils.validate, which the telemetry service runs before it saves: a blank key or one longer
    than 255 is a DataValidationException, so the node's Failure (thingsboard/thingsboard
    dao/src/main/java/org/thingsboard/server/dao/util/KvUtils.java @dfe65d5). Not emulated: its
    @NoXss check of the key."""
    for key in keys:
        if convert.is_blank(key):
            raise DataValidationError("Key can't be null or empty")
        if convert.java_length(key) > _MAX_KEY_LENGTH:
            raise DataValidationError(
                f"Validation error: key length must be equal or less than {_MAX_KEY_LENGTH}"
            )


def _log_failure(node: str, msg: TbMsg, exc: Exception) -> None:
    log.info(f"{node}: Failure", device=msg.originator.name, error=f"{type(exc).__name__}: {exc}")


class SaveTimeseries:
    """telemetry.TbMsgTimeseriesNode.onMsg, in its order: a message other than POST_TELEMETRY_REQUEST
    is Failure; ts is metadata ts (or now with ``useServerTs``); DEDUPLICATE passes a repeat on
    untouched before the data is read; the data is ``JsonConverter.convertToTelemetry(JsonParser
    .parseString(data), ts)``, so an object with ``ts`` and ``values`` is saved at its own ts, an array
    is one group per element, and malformed data, a null value, a ts getAsLong refuses or a value that
    does not convert is Failure (what onMsg throws, RuleNodeActorMessageProcessor tells as Failure);
    no value at all is Failure ("Msg body is empty"), so is a TTL metadata value Long.parseLong
    refuses and a key KvUtils refuses. ON_EVERY_MESSAGE saves, WEBSOCKETS_ONLY saves nothing (the
    emulator has no WebSockets). TTL itself is not emulated: nothing expires."""

    def __init__(self, ctx: NodeContext, config: TimeseriesConfiguration) -> None:
        self.ctx = ctx
        self.use_server_ts = config.use_server_ts
        self.processing = _processing(config.processing_settings)

    def on_msg(self, msg: TbMsg, emit: Emit) -> None:
        if msg.type != MsgType.POST_TELEMETRY_REQUEST:
            emit(msg, FAILURE)  # "Unsupported msg type: ..."
            return
        ts = now_ms() if self.use_server_ts else _metadata_ts(msg)
        save = self.processing
        if isinstance(save, _Deduplication) and not save.first(ts, msg.originator.id):
            emit(msg, SUCCESS)  # SKIP_ALL: short-circuit before the body is looked at
            return
        try:
            groups = convert.telemetry_by_ts(msg.gson(), ts, self.ctx.json_settings)
            ttl = msg.metadata.get("TTL", "")
            if ttl:
                gson.parse_long(ttl)  # Long.parseLong; the TTL itself is not emulated
            _validate_keys(key for values in groups.values() for key in values)
        except (gson.JavaRuntimeException, DataValidationError) as exc:
            _log_failure("save timeseries", msg, exc)
            emit(msg, FAILURE)
            return
        if not groups:
            emit(msg, FAILURE)  # "Msg body is empty: ..."
            return
        if save:
            for group_ts, values in groups.items():
                self.ctx.save_timeseries(msg.originator, group_ts, values)
        emit(msg, SUCCESS)


class SaveAttributes:
    """telemetry.TbMsgAttributesNode.onMsg, in its order: a message other than POST_ATTRIBUTES_REQUEST
    is Failure; the data is ``JsonConverter.convertToAttributes(JsonParser.parseString(data))``
    (an object; a null value or a value that does not convert is Failure); no attribute is Success;
    then the processing settings (as for SaveTimeseries); the metadata's ``scope`` or the configured
    one (an unknown scope fails the message, not the start); with ``updateAttributesOnlyOnValueChange``
    only the keys whose value changed; a key KvUtils refuses is Failure where the attributes are
    saved. Devices hear of shared ones when the configuration or the metadata ``notifyDevice`` (empty
    counts as true) says so. Not emulated: ``sendAttributesUpdatedNotification`` (ATTRIBUTES_UPDATED)."""

    SCOPES = ("CLIENT_SCOPE", "SHARED_SCOPE", "SERVER_SCOPE")  # AttributeScope

    def __init__(self, ctx: NodeContext, config: AttributesConfiguration) -> None:
        if config.send_attributes_updated_notification:
            raise ValueError("not emulated: sendAttributesUpdatedNotification")
        self.ctx = ctx
        self.config = config
        self.processing = _processing(config.processing_settings)

    def on_msg(self, msg: TbMsg, emit: Emit) -> None:
        if msg.type != MsgType.POST_ATTRIBUTES_REQUEST:
            emit(msg, FAILURE)
            return
        try:
            values = convert.attributes(msg.gson(), self.ctx.json_settings, null_refused=True)
        except gson.JavaRuntimeException as exc:
            _log_failure("save attributes", msg, exc)
            emit(msg, FAILURE)
            return
        if not values:
            emit(msg, SUCCESS)
            return
        save = self.processing
        if isinstance(save, _Deduplication) and not save.first(_metadata_ts(msg), msg.originator.id):
            emit(msg, SUCCESS)
            return
        scope = msg.metadata.get("scope") or self.config.scope
        if scope not in self.SCOPES:
            emit(msg, FAILURE)  # AttributeScope.valueOf
            return
        if self.config.update_attributes_only_on_value_change:
            current = msg.originator.attributes(scope)
            values = {k: v for k, v in values.items() if k not in current or not _same_value(current[k], v)}
        if values and save:
            try:
                _validate_keys(values)
            except DataValidationError as exc:
                _log_failure("save attributes", msg, exc)
                emit(msg, FAILURE)
                return
            notify_md = msg.metadata.get("notifyDevice", "")
            notify = self.config.notify_device or notify_md == "" or notify_md.lower() == "true"
            self.ctx.save_attributes(msg.originator, scope, values, notify)
        emit(msg, SUCCESS)


def _same_value(old: Any, new: Any) -> bool:
    """filterChangedAttr compares the KvEntry values, their data type included (1 is not 1.0 or true)."""
    return type(old) is type(new) and old == new


class LogNode:
    """action.TbLogNode with its default script: ThingsBoard recognises that script (isStandard) and
    logs the message without running it, as the emulator does. Any other script needs ThingsBoard's
    script engine and is not emulated."""

    def __init__(self, ctx: NodeContext, config: LogConfiguration) -> None:
        script = config.tbel_script if config.script_lang is ScriptLanguage.TBEL else config.js_script
        if script != LogConfiguration.STANDARD_SCRIPT:
            raise ValueError(
                "not emulated: a log script other than the default (ThingsBoard's script engine)"
            )

    def on_msg(self, msg: TbMsg, emit: Emit) -> None:
        # toLogMessage, logged at INFO by the node's logger
        log.info(f"\nIncoming message:\n{msg.data}\nIncoming metadata:\n{dumps(msg.metadata)}")
        emit(msg, SUCCESS)


_PKG = "org.thingsboard.rule.engine."
NODE_TYPES: dict[str, Callable[[NodeContext, Any], Node]] = {
    _PKG + "filter.TbMsgTypeSwitchNode": MsgTypeSwitch,
    _PKG + "filter.TbDeviceTypeSwitchNode": DeviceProfileSwitch,
    _PKG + "transform.TbChangeOriginatorNode": ChangeOriginator,
    _PKG + "rpc.TbSendRPCRequestNode": SendRpcRequest,
    _PKG + "rpc.TbSendRPCReplyNode": SendRpcReply,
    _PKG + "rest.TbRestApiCallNode": RestApiCall,
    _PKG + "telemetry.TbMsgTimeseriesNode": SaveTimeseries,
    _PKG + "telemetry.TbMsgAttributesNode": SaveAttributes,
    _PKG + "action.TbLogNode": LogNode,
}


def _create(
    ctx: NodeContext,
    version: TbVersion,
    implementation: Callable[[NodeContext, Any], Node],
    spec: dict[str, Any],
) -> Node:
    """One node of a chain as ThingsBoard ``version`` would run it after an import: saved (upgraded,
    validated), its configuration read as ``init`` reads it, then the node's own ``init`` checks."""
    saved = save_rule_node(spec, version, now_ms())
    node_class = NODE_CLASSES[version][saved["type"]]
    if saved["configurationVersion"] > node_class.version:
        # ThingsBoard stores and runs it as it is, reading it with its own (older) schema
        log.warning(
            "rule node configuration is newer than this ThingsBoard's node",
            node=saved.get("name"),
            configuration_version=saved["configurationVersion"],
            node_version=node_class.version,
            thingsboard=version.value,
        )
    config = (
        read_configuration(node_class, saved.get("configuration")) if node_class.reads_configuration else None
    )
    return implementation(ctx, config)


def bind(
    ctx: NodeContext, version: TbVersion = DEFAULT_TB_VERSION
) -> dict[str, Callable[[dict[str, Any]], Node]]:
    """The node table for ``rule_engine.build_engine``: node type -> a factory taking the node's JSON."""
    return {name: functools.partial(_create, ctx, version, cls) for name, cls in NODE_TYPES.items()}
