"""Every RPC of every service has a role table entry: a new method is not served until someone
says who may call it."""

from __future__ import annotations

import pytest

from grantflow.v1 import review_pb2
from services.applications.api import SERVICE as APPLICATIONS
from services.applications.calendar_api import CALENDAR_SERVICE as CALENDAR
from services.applications.notification_api import NOTIFICATION_SERVICE as NOTIFICATIONS
from services.applications.repair_api import REPAIR_SERVICE as REPAIR
from services.common.audit_api import SERVICE as AUDIT
from services.common.auth import PUBLIC, mint_token
from services.common.operations import SERVICE as OPERATIONS
from services.common.service_main import ServiceSpec
from services.common.vocabulary import Role
from services.disbursement.api import SERVICE as DISBURSEMENT
from services.review.api import SERVICE as REVIEW
from services.review.notice_api import SERVICE as NOTICE


@pytest.mark.parametrize(
    "spec",
    [
        APPLICATIONS,
        REVIEW,
        DISBURSEMENT,
        AUDIT,
        OPERATIONS,
        REPAIR,
        NOTICE,
        CALENDAR,
        NOTIFICATIONS,
    ],
    ids=lambda s: s.full_name,
)
def test_the_role_table_names_every_method_and_only_roles(spec: ServiceSpec) -> None:
    assert set(spec.method_roles) == {method.name for method in spec.descriptor.methods}
    assert all(
        roles and (roles <= set(Role) or roles == {PUBLIC}) for roles in spec.method_roles.values()
    )


def test_only_the_public_notices_answer_without_a_token() -> None:
    public = {
        f"{spec.name}.{method}"
        for spec in (APPLICATIONS, REVIEW, DISBURSEMENT, AUDIT, OPERATIONS, REPAIR, NOTICE)
        for method, roles in spec.method_roles.items()
        if PUBLIC in roles
    }
    assert public == {"notice.ListNotices", "notice.GetNotice"}


def test_public_is_no_role_a_token_can_carry() -> None:
    assert PUBLIC not in set(Role)
    with pytest.raises(ValueError, match="unknown role"):
        mint_token("secret", "anyone", PUBLIC)


def test_public_beside_a_role_or_an_unknown_role_is_refused() -> None:
    descriptor = review_pb2.DESCRIPTOR.services_by_name["ReviewService"]
    roles: dict[str, tuple[str, ...]] = {m.name: (Role.OPS,) for m in descriptor.methods}
    for wrong in ((PUBLIC, Role.OPS), ("auditor-typo",), ()):
        with pytest.raises(ValueError, match="must name roles, or PUBLIC alone"):
            ServiceSpec(name="review", descriptor=descriptor, roles={**roles, "GetTask": wrong})


def test_a_role_table_missing_a_method_is_refused() -> None:
    descriptor = review_pb2.DESCRIPTOR.services_by_name["ReviewService"]
    with pytest.raises(ValueError, match="no roles for \\['GetTask'\\]"):
        ServiceSpec(
            name="review",
            descriptor=descriptor,
            roles={m.name: (Role.OPS,) for m in descriptor.methods if m.name != "GetTask"},
        )
