"""What a grant tells the applicant about each stage, written for a person and in simplified
Chinese: the reasons carried by the stage reports that become the applicant's status.

Nothing here names a status code or an exception; a reviewer's own words are quoted as given.
Pure functions and constants only, so workflow code may use them directly.
"""

from __future__ import annotations

from services.common.vocabulary import Department, GrantStage

DEPARTMENT_NAMES = {
    Department.INDUSTRY: "市工业和信息化局",
    Department.FINANCE: "市财政局",
    Department.HR: "市人力资源和社会保障局",
}
STAGE_NAMES = {
    GrantStage.SUBMITTED: "已受理",
    GrantStage.FORMAL_CHECK: "形式审查中",
    GrantStage.AWAITING_SUPPLEMENT: "待补正",
    GrantStage.IN_REVIEW: "部门审查中",
    GrantStage.APPROVED: "审查通过",
    GrantStage.IN_NOTICE: "公示中",
    GrantStage.AWAITING_FUNDING_PLAN: "待列入资金计划",
    GrantStage.IN_PAYMENT: "资金拨付中",
    GrantStage.PAID: "已拨付",
    GrantStage.REJECTED: "不予资助",
    GrantStage.WITHDRAWN: "已撤回",
    GrantStage.PAYMENT_FAILED: "拨付未成功",
    GrantStage.EXPERT_REVIEW: "专家评审中",
    GrantStage.SPECIAL_AUDIT: "专项审计中",
    GrantStage.AWAITING_NOTICE: "待公示",
    GrantStage.WAITLISTED: "预算不足，待后续批次安排",
    GrantStage.INSTALMENTS: "分期支付中",
    GrantStage.MILESTONE_OVERDUE: "分期里程碑逾期",
}

NO_ELIGIBLE_AMOUNT = "按申报数据计算，本项目无可资助金额"
NO_SUPPLEMENT = "未在补正期限内提交补正材料"
NO_BUDGET = "本计划年度资助资金已安排完毕，本项目未能获得资助"
WITHDRAWN_BY_APPLICANT = "申请单位撤回申请"
IN_A_FUNDING_PLAN = "资助已列入资金计划，不能撤回"
REVIEWERS_TOLD = "申请已撤回"
ROUND_DECIDED = "本轮联审已按联审规则形成结论，无需再审"
EXPERT_REVIEW = "专家评审中：评审专家独立评分，评分汇总后进入下一环节"
SPECIAL_AUDIT = "专项审计中：审计机构核定可资助金额的依据数据"
AWAITING_NOTICE = "部门联审通过，等待同批次项目一并公示"
GONE_BEFORE_NOTICE = "申请在公示前已撤回"
PARTLY_PAID = "资助资金已按分期拨付部分款项，不能撤回"
WAITLISTED = "本批次预算科目资金不足，项目列入候补名单，待后续批次安排资金后公示"


def department(name: str) -> str:
    """A department's name for people; an unknown one is shown as given."""
    try:
        return DEPARTMENT_NAMES[Department(name)]
    except ValueError:
        return name


def formal_check_failed(problems: list[str]) -> str:
    return "形式审查未通过：" + "；".join(problems)


def supplement_needed(problems: list[str]) -> str:
    return "形式审查需补正：" + "；".join(problems) + "。请在补正期限内提交"


def review_round(number: int) -> str:
    return f"第{number}轮部门审查"


def rejected_by(department_name: str, reason: str) -> str:
    return f"{department(department_name)}审查不予通过：{reason}"


def returned_by(department_name: str, reason: str) -> str:
    return f"{department(department_name)}退回补正：{reason}"


def payment_failed(reason: str) -> str:
    return f"资金拨付未成功（{reason}），将列入后续资金计划重新拨付"


def not_withdrawable(stage: GrantStage) -> str:
    return f"申请处于“{STAGE_NAMES[stage]}”阶段，不能撤回"


def eligibility_failed(problems: list[str]) -> str:
    return "资格审查未通过：" + "；".join(problems)


def expert_score_too_low(score_centi: int, pass_centi: int) -> str:
    return f"专家评审汇总得分 {score_centi / 100:.2f} 分，低于 {pass_centi / 100:.2f} 分的立项要求"


def expert_score(score_centi: int) -> str:
    return f"专家评审汇总得分 {score_centi / 100:.2f} 分"


def audited(figure: str, declared_fen: int, audited_fen: int) -> str:
    if audited_fen < declared_fen:
        return f"专项审计核定 {figure} 低于申报数，按就低原则以审计数计算资助金额"
    return f"专项审计核定 {figure} 与申报数一致"


def in_notice(amount_fen: int, requested_fen: int, closes: str) -> str:
    yuan = f"{amount_fen // 100:,}.{amount_fen % 100:02d}"
    if amount_fen < requested_fen:
        asked = f"{requested_fen // 100:,}.{requested_fen % 100:02d}"
        return (
            f"拟资助 {yuan} 元（预算不足，按比例核减，原核定 {asked} 元），"
            f"公示至 {closes}，公示期内可提出异议"
        )
    return f"拟资助 {yuan} 元，公示至 {closes}，公示期内可提出异议"


def objection_upheld(reason: str) -> str:
    return f"公示期异议成立，取消拟资助：{reason}"


def objection_re_review(reason: str) -> str:
    return f"公示期异议成立，重新审查：{reason}"


def renotice(reason: str) -> str:
    return f"公示期异议不成立（{reason}），按规定在后续批次重新公示"


def _yuan(fen: int) -> str:
    return f"{fen // 100:,}.{fen % 100:02d}"


MILESTONE_NAMES = {"award": "资助确定", "acceptance": "项目验收", "audit": "专项审计"}


def milestone(name: str) -> str:
    return MILESTONE_NAMES.get(name, name)


def instalment_of(number: int, count: int) -> str:
    """ "分期支付中 2/3": the stage's words with which instalment the grant is at."""
    return f"分期支付中 {number}/{count}"


def instalment_awaiting_plan(number: int, count: int, amount_fen: int) -> str:
    return (
        f"{instalment_of(number, count)}：第{number}期资金 {_yuan(amount_fen)} 元待列入资助资金计划"
    )


def instalment_paid(
    number: int, count: int, next_milestone: str, due: str, paid_fen: int, award_fen: int
) -> str:
    return (
        f"{instalment_of(number, count)}：第{number}期已拨付（累计 {_yuan(paid_fen)} 元，"
        f"共 {_yuan(award_fen)} 元）；第{number + 1}期待{milestone(next_milestone)}确认，"
        f"应于 {due} 前完成"
    )


def milestone_overdue(number: int, count: int, next_milestone: str, due: str) -> str:
    return (
        f"{instalment_of(number - 1, count)}：第{number}期的{milestone(next_milestone)}"
        f"应于 {due} 前完成，已逾期，确认后仍可拨付"
    )
