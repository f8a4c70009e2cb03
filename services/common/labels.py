"""What each term of the vocabulary (services/common/vocabulary.py) is called in Chinese, for
everything a person reads: the CLI's tables, the operator's timeline. One label per term, here
only; `label` falls back to the term's own spelling so that a newer term still prints."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from services.common.vocabulary import (
    AccountState,
    AllocationState,
    AmountKind,
    AuditAction,
    AuditBreak,
    AuditTaskState,
    ClawbackState,
    Decision,
    DeliveryStatus,
    Department,
    EligibilityCheck,
    ExpertTaskState,
    GrantRepairState,
    GrantStage,
    JoinPolicy,
    NotificationChannel,
    ObjectionConsequence,
    ObjectionKind,
    ObjectionState,
    OverBudgetPolicy,
    PaymentState,
    PlanState,
    ReconciliationExceptionState,
    ReconciliationKind,
    ReconciliationResolution,
    RegistrationKind,
    RepairAction,
    RepairState,
    ReservationState,
    ReviewStage,
    Role,
    ScoreAggregation,
    Sector,
    TaskState,
    Term,
)


class Labels(Mapping[Term, str]):
    """Labels keyed by term *and* vocabulary: terms of different vocabularies may share a
    spelling (Department.INDUSTRY and Sector.INDUSTRY are both "industry"; several states are
    "pending"), and a StrEnum hashes as its string, so a plain dict would keep only one."""

    def __init__(self, pairs: list[tuple[Term, str]]) -> None:
        self._labels: dict[tuple[type, str], str] = {}
        self._terms: list[Term] = []
        for term, text in pairs:
            key = (type(term), term.value)
            if key in self._labels:
                raise ValueError(f"{type(term).__name__}.{term.name} is labelled twice")
            self._labels[key] = text
            self._terms.append(term)

    def __getitem__(self, term: Term) -> str:
        if not isinstance(term, Term):
            raise KeyError(term)
        return self._labels[(type(term), term.value)]

    def __iter__(self) -> Iterator[Term]:
        return iter(self._terms)

    def __len__(self) -> int:
        return len(self._terms)


LABELS = Labels(
    [
        (GrantStage.SUBMITTED, "已申报"),
        (GrantStage.FORMAL_CHECK, "合规性初审"),
        (GrantStage.AWAITING_SUPPLEMENT, "待补正"),
        (GrantStage.IN_REVIEW, "部门联审"),
        (GrantStage.APPROVED, "审定通过"),
        (GrantStage.IN_NOTICE, "社会公示"),
        (GrantStage.AWAITING_FUNDING_PLAN, "待下达资助计划"),
        (GrantStage.IN_PAYMENT, "拨付中"),
        (GrantStage.PAID, "已拨付"),
        (GrantStage.REJECTED, "未通过"),
        (GrantStage.WITHDRAWN, "已撤回"),
        (GrantStage.PAYMENT_FAILED, "拨付失败"),
        (GrantStage.EXPERT_REVIEW, "专家评审"),
        (GrantStage.SPECIAL_AUDIT, "专项审计"),
        (GrantStage.AWAITING_NOTICE, "待公示"),
        (GrantStage.WAITLISTED, "预算不足，待后续批次安排"),
        (Role.APPLICANT, "申报单位"),
        (Role.REVIEWER, "评审人"),
        (Role.DEPARTMENT_HEAD, "处长"),
        (Role.EXPERT, "评审专家"),
        (Role.AUDITOR, "审计机构"),
        (Role.FINANCE, "财政"),
        (Role.OPS, "运维"),
        (Role.SYSTEM, "系统"),
        (Department.INDUSTRY, "工信局"),
        (Department.FINANCE, "财政局"),
        (Department.HR, "人社局"),
        (TaskState.OPEN, "待领取"),
        (TaskState.CLAIMED, "已领取"),
        (TaskState.DECIDED, "已决定"),
        (TaskState.CANCELLED, "已取消"),
        (Decision.APPROVE, "同意"),
        (Decision.REJECT, "不同意"),
        (Decision.RETURN_FOR_SUPPLEMENT, "退回补正"),
        (AmountKind.RATIO_CAP, "按比例资助（设上限）"),
        (AmountKind.SCORE_TIERS, "按评审得分分档奖励"),
        (AmountKind.PER_UNIT, "按人（件）定额补贴"),
        (OverBudgetPolicy.PRO_RATA, "按比例核减"),
        (OverBudgetPolicy.WAITING_LIST, "候补，以后批次资助"),
        (JoinPolicy.ALL_APPROVE, "全部部门同意"),
        (JoinPolicy.ANY_REJECT, "任一部门不同意即不通过"),
        (JoinPolicy.QUORUM, "达到法定部门数同意"),
        (ScoreAggregation.MEAN, "平均分"),
        (ScoreAggregation.TRIMMED_MEAN, "去掉最高最低分后的平均分"),
        (ScoreAggregation.MEDIAN, "中位数"),
        (RegistrationKind.ENTERPRISE, "企业"),
        (RegistrationKind.SOCIAL_ORGANISATION, "社会组织"),
        (RegistrationKind.PUBLIC_INSTITUTION, "事业单位"),
        (ReservationState.RESERVED, "已预留"),
        (ReservationState.AWARDED, "公示无异议，待列入计划"),
        (ReservationState.IN_PLAN, "已列入资助计划"),
        (ReservationState.PAID, "已拨付"),
        (ReservationState.RELEASED, "已释放"),
        (ReservationState.RETURNED, "已退汇，待更正收款账户后重新拨付"),
        (AccountState.CONFIRMED, "已确认（生效）"),
        (AccountState.PROPOSED, "变更待审批"),
        (AccountState.SUPERSEDED, "已被变更替代"),
        (AccountState.WITHDRAWN, "变更申请已被替代"),
        (AllocationState.RESERVED, "已预留"),
        (AllocationState.WAITLISTED, "候补（待后续批次）"),
        (PlanState.DRAFT, "草拟"),
        (PlanState.APPROVED, "已审核"),
        (PlanState.PAYING, "拨付中"),
        (PlanState.COMPLETED, "已完成"),
        (PlanState.COMPLETED_WITH_FAILURES, "已完成（部分失败）"),
        (PlanState.AWAITING_SECOND_APPROVAL, "待二级审批"),
        (PlanState.CANCELLED, "已撤销"),
        (PaymentState.PENDING, "待拨付"),
        (PaymentState.PAID, "已拨付"),
        (PaymentState.FAILED, "拨付失败"),
        (PaymentState.CANCELLED, "已随计划撤销"),
        (PaymentState.SETTLING, "国库已受理，待清算"),
        (PaymentState.RETURNED, "已退汇"),
        (ReconciliationKind.NOT_IN_LEDGER, "银行已付、账未记"),
        (ReconciliationKind.NOT_AT_GATEWAY, "账已记、银行未付"),
        (ReconciliationKind.AMOUNT_DIFFERS, "金额不符"),
        (ReconciliationKind.PAYEE_DIFFERS, "收款人不符"),
        (ReconciliationKind.DAY_DIFFERS, "跨日入账"),
        (ReconciliationKind.STATUS_DIFFERS, "退汇状态不符"),
        (ReconciliationExceptionState.OPEN, "待处理"),
        (ReconciliationExceptionState.RESOLVED, "已处理"),
        (ReconciliationExceptionState.CLEARED, "重新对账已平"),
        (ReconciliationResolution.TIMING_DIFFERENCE, "时间性差异"),
        (ReconciliationResolution.LEDGER_CORRECTED, "已更正账务"),
        (ReconciliationResolution.TREASURY_CORRECTED, "国库已更正"),
        (ReconciliationResolution.ACCEPTED, "核实无误"),
        (ClawbackState.OPEN, "追回中"),
        (ClawbackState.SETTLED, "已追回"),
        (ObjectionKind.DISPUTE, "异议"),
        (ObjectionKind.COMPLAINT, "投诉"),
        (ObjectionKind.REPORT, "举报"),
        (ObjectionState.LODGED, "待处理"),
        (ObjectionState.UPHELD, "成立"),
        (ObjectionState.DISMISSED, "不成立"),
        (ObjectionConsequence.FALL_AWAY, "取消资助"),
        (ObjectionConsequence.RE_REVIEW, "重新评审"),
        (AuditBreak.EDITED, "审计记录被篡改"),
        (AuditBreak.DELETED, "审计记录被删除"),
        (AuditBreak.INSERTED, "审计记录被插入或调换顺序"),
        (AuditAction.REVIEW_CLAIMED, "领取评审任务"),
        (AuditAction.REVIEW_DECIDED, "评审决定"),
        (AuditAction.OBJECTION_HANDLED, "异议处理"),
        (AuditAction.PROGRAM_PUBLISHED, "发布申报规则"),
        (AuditAction.CREDIT_LISTED, "列入信用名单"),
        (AuditAction.ELIGIBILITY_CHECKED, "资格审查"),
        (AuditAction.WITHDRAWAL_REQUESTED, "申请撤回"),
        (AuditAction.GRANT_APPROVED, "资助审定通过"),
        (AuditAction.GRANT_IN_NOTICE, "审定通过并公示"),
        (AuditAction.GRANT_REJECTED, "资助不予通过"),
        (AuditAction.GRANT_WITHDRAWN, "资助已撤回"),
        (AuditAction.GRANT_PAID, "资金已拨付"),
        (AuditAction.GRANT_PAYMENT_FAILED, "拨付失败"),
        (AuditAction.BUDGET_SET, "设定预算"),
        (AuditAction.BUDGET_CHANGED, "调整预算"),
        (AuditAction.BUDGET_LINE_SET, "设定预算科目年度预算"),
        (AuditAction.BUDGET_LINE_CHANGED, "调整预算科目年度预算"),
        (AuditAction.BATCH_ALLOCATED, "批次分配资金"),
        (AuditAction.RESERVATION_MADE, "预留资金"),
        (AuditAction.RESERVATION_RELEASED, "释放预留资金"),
        (AuditAction.AWARD_CONFIRMED, "公示后确认资助"),
        (AuditAction.PLAN_CREATED, "编制资助计划（经办）"),
        (AuditAction.PLAN_APPROVED, "审批资助计划（复核）"),
        (AuditAction.PLAN_FIRST_APPROVED, "资助计划一级审批（待二级审批）"),
        (AuditAction.PLAN_CANCELLED, "撤销资助计划"),
        (AuditAction.PLAN_COMPLETED, "资助计划完成"),
        (AuditAction.PAYMENT_SETTLED, "支付成功"),
        (AuditAction.PAYMENT_FAILED, "支付失败"),
        (AuditAction.PAYMENT_RETRIED, "修复：重新支付"),
        (AuditAction.RECONCILIATION_RUN, "对账"),
        (AuditAction.RECONCILIATION_RESOLVED, "对账差异处理"),
        (AuditAction.CLAWBACK_OPENED, "发起资金追回"),
        (AuditAction.CLAWBACK_REPAID, "追回资金退还"),
        (AuditAction.ACCOUNT_CONFIRMED, "确认收款账户"),
        (AuditAction.ACCOUNT_CHANGE_PROPOSED, "申请变更收款账户"),
        (AuditAction.ACCOUNT_CHANGE_APPROVED, "审批收款账户变更"),
        (AuditAction.PAYMENT_SETTLING, "国库已受理，待清算"),
        (AuditAction.PAYMENT_RETURNED, "拨付退汇"),
        (RepairAction.REOPEN_REVIEW, "重新开启部门审核"),
        (RepairAction.RETRY_PAYMENT, "重新支付失败的付款行"),
        (RepairAction.MOVE_TO_STAGE, "退回到指定阶段"),
        (RepairAction.CANCEL, "撤销并补偿（释放预留、通知申报单位）"),
        (RepairAction.RESUME, "重新执行失败重试中的活动"),
        (RepairState.PREVIEWED, "预览（未做任何更改）"),
        (RepairState.AWAITING_APPROVAL, "等待第二位运维人员审批"),
        (RepairState.RUNNING, "执行中"),
        (RepairState.PAUSED, "已暂停"),
        (RepairState.COMPLETED, "已完成"),
        (RepairState.LAPSED, "审批超时，未执行"),
        (GrantRepairState.PENDING, "待处理"),
        (GrantRepairState.DONE, "完成"),
        (GrantRepairState.FAILED, "失败"),
        (AuditAction.REVIEW_RELEASED, "退回评审任务"),
        (AuditAction.REVIEW_REASSIGNED, "改派评审任务"),
        (AuditAction.EXPERT_ADDED, "专家入库"),
        (AuditAction.EXPERT_PANEL_DRAWN, "抽取评审专家"),
        (AuditAction.EXPERT_SCORED, "专家评分"),
        (AuditAction.EXPERT_REVIEW_DONE, "专家评审完成"),
        (AuditAction.AUDIT_REQUESTED, "委托专项审计"),
        (AuditAction.AUDIT_CONFIRMED, "审计确认"),
        (ReviewStage.FORMAL_CHECK, "形式审查"),
        (ReviewStage.DEPARTMENT_REVIEW, "部门评审"),
        (ReviewStage.AUDIT, "专项审计"),
        (ReviewStage.OBJECTION, "异议处理"),
        (ReviewStage.EXPERT_REVIEW, "专家评审"),
        (ExpertTaskState.PENDING, "待评分"),
        (ExpertTaskState.SUBMITTED, "已评分"),
        (AuditTaskState.OPEN, "待审计"),
        (AuditTaskState.CONFIRMED, "已确认"),
        (AuditTaskState.CANCELLED, "已取消"),
        (Sector.AGRICULTURE, "农、林、牧、渔业"),
        (Sector.INDUSTRY, "工业"),
        (Sector.CONSTRUCTION, "建筑业"),
        (Sector.WHOLESALE, "批发业"),
        (Sector.RETAIL, "零售业"),
        (Sector.TRANSPORT, "交通运输业"),
        (Sector.WAREHOUSING, "仓储业"),
        (Sector.POSTAL, "邮政业"),
        (Sector.ACCOMMODATION, "住宿业"),
        (Sector.CATERING, "餐饮业"),
        (Sector.TRANSMISSION, "信息传输业"),
        (Sector.SOFTWARE, "软件和信息技术服务业"),
        (Sector.REAL_ESTATE, "房地产开发经营"),
        (Sector.PROPERTY_MANAGEMENT, "物业管理"),
        (Sector.LEASING, "租赁和商务服务业"),
        (Sector.OTHER, "其他未列明行业"),
        (RegistrationKind.OTHER, "其他"),
        (EligibilityCheck.REGISTRY, "企业登记信息"),
        (EligibilityCheck.CREDIT, "信用记录"),
        (EligibilityCheck.REGISTRATION, "注册地"),
        (EligibilityCheck.REGISTRATION_KIND, "单位类型"),
        (EligibilityCheck.ENTERPRISE_SIZE, "企业规模"),
        (EligibilityCheck.DUPLICATE_FUNDING, "重复资助"),
        (EligibilityCheck.EXCLUDED_PROGRAMS, "多头申报"),
        (EligibilityCheck.ENTERPRISE_YEAR_CAP, "年度资助上限"),
        (AuditAction.CALENDAR_YEAR_SET, "录入工作日日历"),
        (AuditAction.NOTIFICATION_CONTACT_SET, "登记通知联系方式"),
        (DeliveryStatus.PENDING, "待发送"),
        (DeliveryStatus.SENT, "已发送"),
        (DeliveryStatus.FAILED, "发送失败"),
        (DeliveryStatus.SKIPPED, "未登记联系方式"),
        (NotificationChannel.LOG, "记录"),
        (NotificationChannel.MAIL, "邮件"),
        (NotificationChannel.SMS, "短信"),
    ]
)


def label(term: Term | str) -> str:
    """The Chinese name of a term (or of a stage spelt as the search attribute holds it)."""
    if not isinstance(term, Term):
        try:
            term = GrantStage(term)
        except ValueError:
            return str(term)
    return LABELS.get(term, term.value)


def stage_label(stage: str) -> str:
    """A stage as people read it: 拨付失败 (PAYMENT_FAILED)."""
    if not stage:
        return ""
    return f"{label(stage)} ({stage})"
