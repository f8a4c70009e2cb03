"""RepairServicer: the gRPC face of repairs (repair.proto), served by the applications service
beside ApplicationService. Ops only: the caller's token is who asks and who approves, so four
eyes rests on two authenticated ops users."""

from __future__ import annotations

import grpc

from grantflow.v1 import repair_pb2, repair_pb2_grpc
from services.applications.repair_commands import RepairDecision, RequestRepair
from services.applications.repair_use_cases import MAX_QUERY_LENGTH, Repairs
from services.common import validation
from services.common.auth import current_principal
from services.common.errors import InvalidArgument
from services.common.service_main import Companion, ServiceSpec
from services.common.vocabulary import Department, GrantStage, RepairAction, Role
from workflows.repair_contracts import FOUR_EYES, RepairProgress

REPAIR_SERVICE = ServiceSpec(
    name="applications",
    descriptor=repair_pb2.DESCRIPTOR.services_by_name["RepairService"],
    roles={
        "RequestRepair": (Role.OPS,),
        "ApproveRepair": (Role.OPS,),
        "PauseRepair": (Role.OPS,),
        "ResumeRepair": (Role.OPS,),
        "GetRepair": (Role.OPS,),
        "ListRepairs": (Role.OPS,),
    },
)
MAX_REASON = 1000
DEFAULT_LIST = 20
MAX_LIST = 200


def repair_proto(progress: RepairProgress, *, dry_run: bool = False) -> repair_pb2.Repair:
    return repair_pb2.Repair(
        repair_id=progress.repair_id,
        action=progress.action.to_proto(),
        reason=progress.reason,
        state=progress.state.to_proto(),
        requested_by=progress.requested_by,
        approved_by=progress.approved_by,
        query=progress.query,
        dry_run=dry_run or progress.state == "previewed",
        needs_approval=progress.action in FOUR_EYES,
        total=progress.total,
        done=progress.done,
        failed=progress.failed,
        results=[
            repair_pb2.GrantRepairResult(
                application_id=r.application_id, state=r.state.to_proto(), detail=r.detail
            )
            for r in progress.results
        ],
    )


def _repair_id(request: repair_pb2.RepairRef) -> str:
    return validation.request_id("repair_id", request.repair_id.strip())


class RepairServicer(repair_pb2_grpc.RepairServiceServicer):
    def __init__(self, repairs: Repairs) -> None:
        self.repairs = repairs

    async def RequestRepair(
        self, request: repair_pb2.RequestRepairRequest, context: grpc.aio.ServicerContext
    ) -> repair_pb2.Repair:
        application_id = request.application_id.strip()
        if application_id:
            validation.identifier("application_id", application_id)
        command = RequestRepair(
            caller=current_principal(),
            request_id=validation.request_id("request_id", request.request_id),
            action=validation.term("action", RepairAction, request.action),
            reason=validation.text("reason", request.reason, max_len=MAX_REASON),
            application_id=application_id,
            query=validation.text("query", request.query, max_len=MAX_QUERY_LENGTH, required=False),
            dry_run=request.dry_run,
            department=validation.optional_term("department", Department, request.department),
            stage=validation.optional_term("stage", GrantStage, request.stage),
        )
        progress = await self.repairs.request(command)
        return repair_proto(progress, dry_run=command.dry_run)

    async def ApproveRepair(
        self, request: repair_pb2.RepairRef, context: grpc.aio.ServicerContext
    ) -> repair_pb2.Repair:
        command = RepairDecision(current_principal(), _repair_id(request))
        return repair_proto(await self.repairs.approve(command))

    async def PauseRepair(
        self, request: repair_pb2.RepairRef, context: grpc.aio.ServicerContext
    ) -> repair_pb2.Repair:
        command = RepairDecision(current_principal(), _repair_id(request))
        return repair_proto(await self.repairs.pause(command))

    async def ResumeRepair(
        self, request: repair_pb2.RepairRef, context: grpc.aio.ServicerContext
    ) -> repair_pb2.Repair:
        command = RepairDecision(current_principal(), _repair_id(request))
        return repair_proto(await self.repairs.resume(command))

    async def GetRepair(
        self, request: repair_pb2.RepairRef, context: grpc.aio.ServicerContext
    ) -> repair_pb2.Repair:
        return repair_proto(await self.repairs.repair(_repair_id(request)))

    async def ListRepairs(
        self, request: repair_pb2.ListRepairsRequest, context: grpc.aio.ServicerContext
    ) -> repair_pb2.ListRepairsResponse:
        if request.limit < 0:
            raise InvalidArgument("limit", "must not be negative")
        repairs = await self.repairs.recent(min(request.limit or DEFAULT_LIST, MAX_LIST))
        return repair_pb2.ListRepairsResponse(repairs=[repair_proto(r) for r in repairs])


def repair_companion(repairs: Repairs) -> Companion:
    servicer = RepairServicer(repairs)

    def register(server: grpc.aio.Server) -> None:
        repair_pb2_grpc.add_RepairServiceServicer_to_server(servicer, server)

    return Companion(REPAIR_SERVICE, register)
