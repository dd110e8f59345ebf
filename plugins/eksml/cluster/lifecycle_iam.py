"""The lifecycle identity: what eksctl needs to create, scale and delete the project's clusters.

A separate identity from the pipeline's (``eksml.cluster.iam.pipeline_policy``): Airflow's everyday
identity never holds CloudFormation, EC2 or IAM role writes. The policy is eksctl's documented
minimum (eksctl "Minimum IAM policies": AmazonEC2FullAccess, AWSCloudFormationFullAccess,
EksAllAccess, IamLimitedAccess) narrowed to the project's names; a permissions boundary caps it.
:data:`EKSCTL_CALLS` lists the calls eksctl makes with it, which preflight simulates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eksml.cluster.iam import POLICY_VERSION, partition_for
from eksml.cluster.karpenter_aws import controller_role_name, interruption_queue_name, node_role_name, rule_prefix
from eksml.cluster.loadbalancer import controller_role_name as load_balancer_controller_role_name
from eksml.cluster.request import autoscaler_role_name, irsa_role_name

#: Name of the managed policy used as the lifecycle identity's permissions boundary.
LIFECYCLE_BOUNDARY_NAME = "eksml-lifecycle-boundary"

#: IAM actions eksctl makes on the roles, instance profiles and OIDC provider of a cluster
#: (eksctl's "Minimum IAM policies", IamLimitedAccess).
EKSCTL_IAM_ACTIONS = (
    "iam:CreateInstanceProfile",
    "iam:DeleteInstanceProfile",
    "iam:GetInstanceProfile",
    "iam:RemoveRoleFromInstanceProfile",
    "iam:AddRoleToInstanceProfile",
    "iam:ListInstanceProfilesForRole",
    "iam:GetRole",
    "iam:CreateRole",
    "iam:DeleteRole",
    "iam:TagRole",
    "iam:UntagRole",
    "iam:AttachRolePolicy",
    "iam:DetachRolePolicy",
    "iam:PutRolePolicy",
    "iam:GetRolePolicy",
    "iam:DeleteRolePolicy",
    "iam:ListAttachedRolePolicies",
    "iam:ListRolePolicies",
    "iam:GetOpenIDConnectProvider",
    "iam:CreateOpenIDConnectProvider",
    "iam:DeleteOpenIDConnectProvider",
    "iam:TagOpenIDConnectProvider",
)

#: What the pipeline does with Karpenter's interruption queue and rules (``eksml.cluster.karpenter_aws``);
#: tagging at creation needs the tag action too. Its IAM calls on the nodes' role are eksctl's kind.
KARPENTER_QUEUE_ACTIONS = (
    "sqs:GetQueueUrl",
    "sqs:CreateQueue",
    "sqs:TagQueue",
    "sqs:ListQueueTags",
    "sqs:GetQueueAttributes",
    "sqs:SetQueueAttributes",
    "sqs:DeleteQueue",
)
KARPENTER_RULE_ACTIONS = (
    "events:PutRule",
    "events:TagResource",
    "events:PutTargets",
    "events:ListTargetsByRule",
    "events:RemoveTargets",
    "events:DeleteRule",
)

#: What eksctl's CloudFormation stacks and the cluster's own services may be passed roles for.
LIFECYCLE_PASSED_TO = ("eks.amazonaws.com", "ec2.amazonaws.com")
#: Service-linked roles EKS creates on first use of an account (managed node groups, the autoscaler).
LIFECYCLE_SERVICE_LINKED = (
    "eks.amazonaws.com",
    "eks-nodegroup.amazonaws.com",
    "autoscaling.amazonaws.com",
    "spot.amazonaws.com",
)


def _lifecycle_names(cluster: str, region: str, account: str, service_accounts: Sequence[str]) -> dict[str, list[str]]:
    """ARN patterns of everything eksctl creates for the project's clusters (``<cluster>`` and
    ``<cluster>-*``): stacks and roles ``eksctl-<cluster>-*``, and the IRSA roles by their exact
    names ``<cluster>[-*]-<region>-<service account>`` (the add-ons' too: cluster autoscaler, AWS
    Load Balancer Controller; never ``<cluster>-*``, which would also cover a
    pipeline or lifecycle role named after the project); and Karpenter's: its controller's and
    nodes' roles, the instance profiles it makes (``<cluster>_<hash>``), the interruption queue and
    its rules."""
    p = partition_for(region)
    clusters = (cluster, f"{cluster}-*")
    irsa = [
        name
        for c in clusters
        for name in (
            *(irsa_role_name(c, region, sa) for sa in service_accounts),
            autoscaler_role_name(c, region),
            load_balancer_controller_role_name(c, region),
            controller_role_name(c),
            node_role_name(c),
        )
    ]
    return {
        "stacks": [f"arn:{p}:cloudformation:{region}:{account}:stack/eksctl-{cluster}-*/*"],
        "clusters": [
            f"arn:{p}:eks:{region}:{account}:{kind}/{name}"
            for kind, name in (
                ("cluster", cluster),
                ("cluster", f"{cluster}-*"),
                ("*", f"{cluster}/*"),
                ("*", f"{cluster}-*/*"),
            )
        ],
        "roles": [
            f"arn:{p}:iam::{account}:role/eksctl-{cluster}-*",
            *(f"arn:{p}:iam::{account}:role/{name}" for name in irsa),
        ],
        "other_iam": [
            f"arn:{p}:iam::{account}:instance-profile/eksctl-{cluster}-*",
            *(f"arn:{p}:iam::{account}:instance-profile/{c}_*" for c in clusters),
            f"arn:{p}:iam::{account}:oidc-provider/oidc.eks.{region}.amazonaws.com/*",
        ],
        "queues": [f"arn:{p}:sqs:{region}:{account}:{interruption_queue_name(c)}" for c in clusters],
        "rules": [f"arn:{p}:events:{region}:{account}:rule/{rule_prefix(cluster)}*"],
    }


def lifecycle_policy(
    cluster_name: str, region: str, *, service_accounts: Sequence[str], account_id: str | None = None
) -> dict[str, Any]:
    """Policy of the identity that runs eksctl (create, scale, delete the project's clusters).

    From eksctl's "Minimum IAM policies" (AmazonEC2FullAccess, AWSCloudFormationFullAccess,
    EksAllAccess, IamLimitedAccess), narrowed to the project: CloudFormation stacks, EKS clusters
    (their node groups, add-ons, access entries) and IAM roles by the project's names, EC2 and
    Auto Scaling by region (the VPC, subnets, NAT gateway and launch templates eksctl creates
    have no name an ARN could know in advance). Attach :func:`lifecycle_boundary` as the role's
    permissions boundary.
    """
    account = account_id or "*"
    p = partition_for(region)
    names = _lifecycle_names(cluster_name, region, account, service_accounts)
    in_region = {"StringEquals": {"aws:RequestedRegion": region}}
    statements = [
        {"Sid": "ProjectStacks", "Effect": "Allow", "Action": "cloudformation:*", "Resource": names["stacks"]},
        {
            "Sid": "FindStacks",
            "Effect": "Allow",
            "Action": ["cloudformation:ListStacks", "cloudformation:DescribeStacks"],
            "Resource": "*",
        },
        {"Sid": "ProjectClusters", "Effect": "Allow", "Action": "eks:*", "Resource": names["clusters"]},
        {
            "Sid": "EksAccountReads",
            "Effect": "Allow",
            "Action": ["eks:ListClusters", "eks:DescribeAddonVersions", "eks:DescribeClusterVersions"],
            "Resource": "*",
        },
        {
            "Sid": "NetworkAndNodesInRegion",
            "Effect": "Allow",
            "Action": ["ec2:*", "autoscaling:*"],
            "Resource": "*",
            "Condition": in_region,
        },
        {
            "Sid": "ProjectRoles",
            "Effect": "Allow",
            "Action": list(EKSCTL_IAM_ACTIONS),
            "Resource": names["roles"] + names["other_iam"],
        },
        {
            "Sid": "PassProjectRolesToEks",
            "Effect": "Allow",
            "Action": "iam:PassRole",
            "Resource": names["roles"],
            "Condition": {"StringEquals": {"iam:PassedToService": list(LIFECYCLE_PASSED_TO)}},
        },
        {"Sid": "ReadRoles", "Effect": "Allow", "Action": "iam:GetRole", "Resource": f"arn:{p}:iam::{account}:role/*"},
        {
            "Sid": "ServiceLinkedRoles",
            "Effect": "Allow",
            "Action": "iam:CreateServiceLinkedRole",
            "Resource": "*",
            "Condition": {"StringEquals": {"iam:AWSServiceName": list(LIFECYCLE_SERVICE_LINKED)}},
        },
        {
            "Sid": "EksAmiParameters",
            "Effect": "Allow",
            "Action": ["ssm:GetParameter", "ssm:GetParameters"],
            "Resource": f"arn:{p}:ssm:{region}::parameter/aws/*",
        },
        {
            "Sid": "ControlPlaneLogs",
            "Effect": "Allow",
            "Action": "logs:PutRetentionPolicy",
            "Resource": f"arn:{p}:logs:{region}:{account}:log-group:/aws/eks/{cluster_name}*",
        },
        {
            "Sid": "KarpenterInterruptionQueue",
            "Effect": "Allow",
            "Action": list(KARPENTER_QUEUE_ACTIONS),
            "Resource": names["queues"],
        },
        {
            "Sid": "KarpenterInterruptionRules",
            "Effect": "Allow",
            "Action": list(KARPENTER_RULE_ACTIONS),
            "Resource": names["rules"],
        },
    ]
    return {"Version": POLICY_VERSION, "Statement": statements}


def lifecycle_boundary(
    cluster_name: str, region: str, *, service_accounts: Sequence[str], account_id: str | None = None
) -> dict[str, Any]:
    """Permissions boundary of the lifecycle identity: the most it can ever do, whatever is attached.

    It allows only the services eksctl uses, in the region; and denies the ways an identity that
    creates roles could raise its own privileges: writing roles outside the project's names,
    attaching AWS's admin policies, touching users, or changing any managed policy (its own
    boundary included: create it as the managed policy ``eksml-lifecycle-boundary``).
    """
    account = account_id or "*"
    p = partition_for(region)
    names = _lifecycle_names(cluster_name, region, account, service_accounts)
    role_writes = [
        "iam:CreateRole",
        "iam:DeleteRole",
        "iam:PutRolePolicy",
        "iam:DeleteRolePolicy",
        "iam:AttachRolePolicy",
        "iam:DetachRolePolicy",
        "iam:UpdateAssumeRolePolicy",
        "iam:TagRole",
        "iam:PassRole",
    ]
    statements = [
        {
            "Sid": "EksctlServicesInRegion",
            "Effect": "Allow",
            "Action": ["cloudformation:*", "eks:*", "ec2:*", "autoscaling:*", "ssm:GetParameter*"]
            + ["logs:PutRetentionPolicy", "sqs:*", "events:*"],
            "Resource": "*",
            "Condition": {"StringEquals": {"aws:RequestedRegion": region}},
        },
        # IAM is global (its calls carry aws:RequestedRegion us-east-1)
        {"Sid": "Iam", "Effect": "Allow", "Action": ["iam:*", "sts:GetCallerIdentity"], "Resource": "*"},
        {
            "Sid": "NoRoleWritesOutsideTheProject",
            "Effect": "Deny",
            "Action": role_writes,
            "NotResource": names["roles"],
        },
        {
            "Sid": "NoAdminPolicies",
            "Effect": "Deny",
            "Action": ["iam:AttachRolePolicy", "iam:PutRolePolicy"],
            "Resource": "*",
            "Condition": {
                "ArnLike": {
                    "iam:PolicyARN": [
                        f"arn:{p}:iam::aws:policy/AdministratorAccess",
                        f"arn:{p}:iam::aws:policy/IAMFullAccess",
                        f"arn:{p}:iam::aws:policy/PowerUserAccess",
                    ]
                }
            },
        },
        {
            "Sid": "NoUsersOrBoundaryChanges",
            "Effect": "Deny",
            "Action": [
                "iam:*User*",
                "iam:*AccessKey*",
                "iam:*LoginProfile*",
                "iam:*Group*",
                "iam:DeleteRolePermissionsBoundary",
                "iam:PutRolePermissionsBoundary",
                "iam:CreatePolicyVersion",
                "iam:SetDefaultPolicyVersion",
                "iam:DeletePolicy",
            ],
            "Resource": "*",
        },
    ]
    return {"Version": POLICY_VERSION, "Statement": statements}


#: The calls ``eksctl create cluster`` / ``delete cluster`` make with the lifecycle identity, with
#: the project's names (CloudFormation creates the stacks' resources with the caller's
#: permissions): (action, resource, extra request context). ``{r}`` region, ``{a}`` account,
#: ``{p}`` partition, ``{c}`` cluster. Preflight simulates them; the tests evaluate them.
EKSCTL_CALLS: tuple[tuple[str, str, dict[str, str]], ...] = (
    ("ssm:GetParameter", "arn:{p}:ssm:{r}::parameter/aws/service/eks/optimized-ami/1.35/amazon-linux-2023/x", {}),
    ("ec2:DescribeAvailabilityZones", "*", {}),
    ("cloudformation:ListStacks", "*", {}),
    ("cloudformation:CreateStack", "arn:{p}:cloudformation:{r}:{a}:stack/eksctl-{c}-cluster/uuid", {}),
    ("cloudformation:DescribeStacks", "arn:{p}:cloudformation:{r}:{a}:stack/eksctl-{c}-cluster/uuid", {}),
    ("ec2:CreateVpc", "arn:{p}:ec2:{r}:{a}:vpc/*", {}),
    ("ec2:CreateNatGateway", "arn:{p}:ec2:{r}:{a}:natgateway/*", {}),
    ("ec2:CreateLaunchTemplate", "arn:{p}:ec2:{r}:{a}:launch-template/*", {}),
    ("iam:CreateRole", "arn:{p}:iam::{a}:role/eksctl-{c}-cluster-ServiceRole-ABC", {}),
    (
        "iam:AttachRolePolicy",
        "arn:{p}:iam::{a}:role/eksctl-{c}-cluster-ServiceRole-ABC",
        {"iam:PolicyARN": "arn:{p}:iam::aws:policy/AmazonEKSClusterPolicy"},
    ),
    (
        "iam:PassRole",
        "arn:{p}:iam::{a}:role/eksctl-{c}-cluster-ServiceRole-ABC",
        {"iam:PassedToService": "eks.amazonaws.com"},
    ),
    ("eks:CreateCluster", "arn:{p}:eks:{r}:{a}:cluster/{c}", {}),
    ("eks:DescribeCluster", "arn:{p}:eks:{r}:{a}:cluster/{c}-run-0123456789", {}),
    ("eks:CreateAccessEntry", "arn:{p}:eks:{r}:{a}:access-entry/{c}/role/{a}/eksml-pipeline/uuid", {}),
    ("eks:CreateAddon", "arn:{p}:eks:{r}:{a}:addon/{c}/vpc-cni/uuid", {}),
    ("iam:CreateOpenIDConnectProvider", "arn:{p}:iam::{a}:oidc-provider/oidc.eks.{r}.amazonaws.com/id/ABC", {}),
    ("iam:CreateRole", "arn:{p}:iam::{a}:role/{c}-{r}-training", {}),
    ("iam:PutRolePolicy", "arn:{p}:iam::{a}:role/{c}-{r}-training", {}),
    ("iam:CreateRole", "arn:{p}:iam::{a}:role/{c}-run-0123456789-{r}-inference", {}),
    ("iam:CreateRole", "arn:{p}:iam::{a}:role/{c}-{r}-cluster-autoscaler", {}),
    # with `ingress` on: the AWS Load Balancer Controller's IRSA role (eksctl, iam.serviceAccounts)
    ("iam:CreateRole", "arn:{p}:iam::{a}:role/{c}-{r}-aws-load-balancer-controller", {}),
    ("iam:PutRolePolicy", "arn:{p}:iam::{a}:role/{c}-{r}-aws-load-balancer-controller", {}),
    ("iam:CreateRole", "arn:{p}:iam::{a}:role/eksctl-{c}-nodegroup-ng-train-NodeInstanceRole-ABC", {}),
    (
        "iam:PassRole",
        "arn:{p}:iam::{a}:role/eksctl-{c}-nodegroup-ng-train-NodeInstanceRole-ABC",
        {"iam:PassedToService": "eks.amazonaws.com"},
    ),
    ("iam:CreateServiceLinkedRole", "*", {"iam:AWSServiceName": "eks-nodegroup.amazonaws.com"}),
    ("eks:CreateNodegroup", "arn:{p}:eks:{r}:{a}:nodegroup/{c}/ng-train/uuid", {}),
    ("autoscaling:CreateOrUpdateTags", "*", {}),
    ("logs:PutRetentionPolicy", "arn:{p}:logs:{r}:{a}:log-group:/aws/eks/{c}/cluster", {}),
    ("eks:DeleteNodegroup", "arn:{p}:eks:{r}:{a}:nodegroup/{c}/ng-train/uuid", {}),
    ("eks:DeleteCluster", "arn:{p}:eks:{r}:{a}:cluster/{c}", {}),
    ("cloudformation:DeleteStack", "arn:{p}:cloudformation:{r}:{a}:stack/eksctl-{c}-cluster/uuid", {}),
    ("iam:DeleteOpenIDConnectProvider", "arn:{p}:iam::{a}:oidc-provider/oidc.eks.{r}.amazonaws.com/id/ABC", {}),
    ("iam:DeleteRole", "arn:{p}:iam::{a}:role/{c}-{r}-training", {}),
    # Karpenter mode: its controller's IRSA role (eksctl), and what eksml.cluster.karpenter_aws makes
    ("iam:CreateRole", "arn:{p}:iam::{a}:role/KarpenterControllerRole-{c}", {}),
    ("iam:PutRolePolicy", "arn:{p}:iam::{a}:role/KarpenterControllerRole-{c}", {}),
    ("iam:CreateRole", "arn:{p}:iam::{a}:role/KarpenterNodeRole-{c}-run-0123456789", {}),
    ("iam:TagRole", "arn:{p}:iam::{a}:role/KarpenterNodeRole-{c}", {}),
    (
        "iam:AttachRolePolicy",
        "arn:{p}:iam::{a}:role/KarpenterNodeRole-{c}",
        {"iam:PolicyARN": "arn:{p}:iam::aws:policy/AmazonEKSWorkerNodePolicy"},
    ),
    ("eks:CreateAccessEntry", "arn:{p}:eks:{r}:{a}:access-entry/{c}/role/{a}/KarpenterNodeRole-{c}/uuid", {}),
    ("iam:CreateServiceLinkedRole", "*", {"iam:AWSServiceName": "spot.amazonaws.com"}),
    ("sqs:CreateQueue", "arn:{p}:sqs:{r}:{a}:{c}", {}),
    ("sqs:SetQueueAttributes", "arn:{p}:sqs:{r}:{a}:{c}-run-0123456789", {}),
    ("events:PutRule", "arn:{p}:events:{r}:{a}:rule/Karpenter-{c}-spot-interruption", {}),
    ("events:PutTargets", "arn:{p}:events:{r}:{a}:rule/Karpenter-{c}-run-0123456789-rebalance", {}),
    ("iam:RemoveRoleFromInstanceProfile", "arn:{p}:iam::{a}:instance-profile/{c}_1234567890", {}),
    ("iam:DeleteInstanceProfile", "arn:{p}:iam::{a}:instance-profile/{c}-run-0123456789_1234567890", {}),
    ("iam:DeleteRole", "arn:{p}:iam::{a}:role/KarpenterNodeRole-{c}", {}),
    ("sqs:DeleteQueue", "arn:{p}:sqs:{r}:{a}:{c}", {}),
    ("events:DeleteRule", "arn:{p}:events:{r}:{a}:rule/Karpenter-{c}-state-change", {}),
)


def lifecycle_calls(cluster_name: str, region: str, account_id: str) -> list[tuple[str, str, dict[str, str]]]:
    """:data:`EKSCTL_CALLS` filled in, each with its ``aws:RequestedRegion`` (IAM's is us-east-1)."""
    out = []
    for action, resource, context in EKSCTL_CALLS:

        def fill(text: str) -> str:
            return text.format(p=partition_for(region), r=region, a=account_id, c=cluster_name)

        requested = "us-east-1" if action.startswith("iam:") else region
        out.append(
            (action, fill(resource), {k: fill(v) for k, v in context.items()} | {"aws:RequestedRegion": requested})
        )
    return out


#: One line for the table of identities in docs/aws.md.
LIFECYCLE_SCOPE = (
    "CloudFormation stacks `eksctl-<cluster>-*`, EKS `<cluster>` and `<cluster>-*` (node groups, add-ons, "
    "access entries), IAM roles `eksctl-<cluster>-*` and the IRSA roles `<cluster>[-*]-<region>-<service account>` "
    "(passed to EKS and EC2 only), "
    "the OIDC provider, EC2 and Auto Scaling in the region; in Karpenter mode its roles "
    "`KarpenterControllerRole-<cluster>[-*]` and `KarpenterNodeRole-<cluster>[-*]`, its instance profiles "
    "`<cluster>[-*]_*`, the SQS queue `<cluster>[-*]` and the EventBridge rules `Karpenter-<cluster>-*`"
)
