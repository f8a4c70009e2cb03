"""Hand-made bytes from outside, on a raw gRPC channel, to every method of every service of the
real stack: a request whose string field holds invalid UTF-8 is answered in the same order as any
other request (UNAUTHENTICATED without a valid token, PERMISSION_DENIED for a role that may not
call the method) and then INVALID_ARGUMENT naming the field, with one log line and no traceback.
Nothing of the servicer runs: the request never decoded."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor, ServiceDescriptor
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from grantflow.sample import credit_code
from grantflow.v1 import applications_pb2, disbursement_pb2, review_pb2
from infra.local.stack import LocalStack
from services.common.auth import mint_token
from services.common.vocabulary import DEPARTMENT_ROLES, Role

pytestmark = pytest.mark.integration

SERVICES: dict[str, ServiceDescriptor] = {
    "applications": applications_pb2.DESCRIPTOR.services_by_name["ApplicationService"],
    "review": review_pb2.DESCRIPTOR.services_by_name["ReviewService"],
    "disbursement": disbursement_pb2.DESCRIPTOR.services_by_name["DisbursementService"],
}
INVALID_UTF8 = b"\xff\xfe\xc3("


# SyncGatewayReturnsRequest holds only a Timestamp.
REQUESTS_WITHOUT_STRINGS = {"grantflow.v1.DisbursementService.SyncGatewayReturns"}


def first_string_field(message: Descriptor, path: str = "") -> tuple[str, bytes] | None:
    """The dotted path of a string field (in the message or a nested one) and bytes that put
    invalid UTF-8 in it; everything else about the request is well formed."""
    for field in message.fields:
        name = f"{path}{field.name}"
        if field.type == FieldDescriptor.TYPE_STRING:
            return name, _length_delimited(field.number, INVALID_UTF8)
        nested = field.message_type
        if nested is not None and not nested.GetOptions().map_entry:
            inner = first_string_field(nested, f"{name}.")
            if inner is not None:
                return inner[0], _length_delimited(field.number, inner[1])
    return None


def _length_delimited(number: int, payload: bytes) -> bytes:
    assert number < 16 and len(payload) < 128  # one-byte tag and length keep this readable
    return bytes([number << 3 | 2, len(payload)]) + payload


def tokens(secret: str) -> dict[Role, str]:
    code = credit_code(424_242)
    # Every role, so each method meets the role that may call it.
    return {
        role: mint_token(
            secret,
            f"{role}.malformed",
            role,
            department="industry" if role in DEPARTMENT_ROLES else "",
            enterprise=code if role == Role.APPLICANT else "",
        )
        for role in Role
    }


def call(channel: grpc.Channel, method: str, body: bytes, token: str | None) -> grpc.RpcError:
    metadata = [("authorization", f"Bearer {token}")] if token is not None else None
    send = channel.unary_unary(method)  # no serializers: the bytes go out as they are
    with pytest.raises(grpc.RpcError) as refused:
        send(body, metadata=metadata, timeout=10)
    return refused.value


@pytest.fixture
def channels(stack: LocalStack) -> Iterator[dict[str, grpc.Channel]]:
    s = stack.settings
    addresses = {
        "applications": s.applications_address,
        "review": s.review_address,
        "disbursement": s.disbursement_address,
    }
    opened = {name: grpc.insecure_channel(address) for name, address in addresses.items()}
    yield opened
    for channel in opened.values():
        channel.close()


def test_invalid_utf8_is_invalid_argument_after_authentication(
    stack: LocalStack, channels: dict[str, grpc.Channel]
) -> None:
    by_role = tokens(stack.settings.auth_secret)
    logs = stack.data_dir / "logs"
    sizes = {name: (logs / f"{name}.log").stat().st_size for name in SERVICES}
    malformed = {name: 0 for name in SERVICES}
    without_strings = set()
    for service_name, service in SERVICES.items():
        channel = channels[service_name]
        for method in service.methods:
            found = first_string_field(method.input_type)
            if found is None:
                without_strings.add(method.full_name)
                continue
            field, body = found
            path = f"/{service.full_name}/{method.name}"

            anonymous = call(channel, path, body, None)
            assert anonymous.code() == grpc.StatusCode.UNAUTHENTICATED, path
            forged = call(channel, path, body, "not-a-token")
            assert forged.code() == grpc.StatusCode.UNAUTHENTICATED, path

            answers = {role: call(channel, path, body, token) for role, token in by_role.items()}
            allowed = [
                r for r, e in answers.items() if e.code() != grpc.StatusCode.PERMISSION_DENIED
            ]
            assert allowed, f"{path}: every role refused"
            for role in allowed:
                error = answers[role]
                assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (path, role, error)
                assert field in (error.details() or ""), (path, error.details())
                violations = _field_violations(error)
                assert [v.field for v in violations] == [field], (path, violations)
                malformed[service_name] += 1

    # A request with no string in it cannot carry invalid UTF-8; each is named here on purpose.
    assert without_strings == REQUESTS_WITHOUT_STRINGS
    for name in SERVICES:
        written = (logs / f"{name}.log").read_bytes()[sizes[name] :].decode(errors="replace")
        assert "Traceback" not in written and "DecodeError" not in written, written[-2000:]
        lines = [line for line in written.splitlines() if "malformed request" in line]
        assert len(lines) == malformed[name], (name, len(lines), malformed[name])


def _field_violations(error: grpc.RpcError) -> list[error_details_pb2.BadRequest.FieldViolation]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "no google.rpc.Status detail"
    violations = []
    for detail in status.details:
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):
            violations.extend(bad_request.field_violations)
    return violations
