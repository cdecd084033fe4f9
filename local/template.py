"""Read template.yaml the way CloudFormation would, for the local stack.

Parses the SAM/CloudFormation template with cfn-lint's loader (it understands the short-form tags
like `!Ref` and `!Sub`), takes parameter defaults (plus overrides), evaluates conditions, and resolves
the intrinsic functions the template uses (Ref, Fn::Sub, Fn::GetAtt, Fn::Join, Fn::If, Fn::Select,
Fn::Split, Fn::FindInMap) to the names and ARNs the local resources have. Unnamed resources get the
deterministic name `<stack>-<LogicalId>` where CloudFormation would add a random suffix.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = REPO / "template.yaml"
DEFAULT_STACK = "card-fraud"
ACCOUNT = "123456789012"  # moto's default account
NO_VALUE = object()  # AWS::NoValue: the property is removed

# Property holding the physical name, per resource type.
NAME_PROPERTY = {
    "AWS::Kinesis::Stream": "Name",
    "AWS::S3::Bucket": "BucketName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::DynamoDB::Table": "TableName",
    "AWS::Serverless::SimpleTable": "TableName",
    "AWS::Serverless::Function": "FunctionName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::RedshiftServerless::Workgroup": "WorkgroupName",
    "AWS::RedshiftServerless::Namespace": "NamespaceName",
    "AWS::IAM::Role": "RoleName",
    "AWS::Scheduler::Schedule": "Name",
    "AWS::Events::Rule": "Name",
    "AWS::SecretsManager::Secret": "Name",
}


class TemplateError(Exception):
    """The template cannot be read or uses something the local stack cannot resolve."""


@dataclass
class Template:
    """A parsed template with its parameters and conditions settled for one local stack."""

    body: dict[str, Any]
    stack_name: str
    region: str
    parameters: dict[str, Any]
    conditions: dict[str, bool] = field(default_factory=dict)
    moto_url: str = "http://127.0.0.1:5000"

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        """Resources whose Condition holds (others are not created, as on CloudFormation)."""
        out = {}
        for logical_id, resource in (self.body.get("Resources") or {}).items():
            cond = resource.get("Condition")
            if cond is None or self.conditions.get(cond, False):
                out[logical_id] = resource
        return out

    def of_type(self, *types: str) -> dict[str, dict[str, Any]]:
        return {k: r for k, r in self.resources.items() if r.get("Type") in types}

    def properties(self, logical_id: str) -> dict[str, Any]:
        """The resource's properties with every intrinsic function resolved."""
        props = self.body["Resources"][logical_id].get("Properties") or {}
        return self.resolve(props)

    def physical_name(self, logical_id: str) -> str:
        resource = self.body["Resources"].get(logical_id)
        if resource is None:
            raise TemplateError(f"template.yaml: no resource {logical_id!r}")
        prop = NAME_PROPERTY.get(resource.get("Type", ""))
        raw = (resource.get("Properties") or {}).get(prop) if prop else None
        if raw is not None:
            name = self.resolve(raw)
            if name is not NO_VALUE:
                return str(name)
        return f"{self.stack_name}-{logical_id}"

    def ref(self, name: str) -> Any:
        pseudo = {
            "AWS::StackName": self.stack_name,
            "AWS::Region": self.region,
            "AWS::AccountId": ACCOUNT,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{ACCOUNT}:stack/{self.stack_name}/local",
            "AWS::NoValue": NO_VALUE,
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in (self.body.get("Parameters") or {}):
            raise TemplateError(f"template.yaml: parameter {name!r} has no Default; pass a value for it")
        resource = self.body.get("Resources", {}).get(name)
        if resource is None:
            raise TemplateError(f"template.yaml: Ref to unknown name {name!r}")
        kind, phys = resource.get("Type", ""), self.physical_name(name)
        if kind == "AWS::SNS::Topic":
            return self.arn("sns", phys)
        if kind == "AWS::SQS::Queue":
            return f"{self.moto_url}/{ACCOUNT}/{phys}"
        if kind == "AWS::SecretsManager::Secret":
            return f"arn:aws:secretsmanager:{self.region}:{ACCOUNT}:secret:{phys}"
        if kind in ("AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion"):
            return f"arn:aws:lambda:{self.region}:{ACCOUNT}:layer:{phys}:1"
        return phys

    def arn(self, service: str, name: str) -> str:
        region, account = self.region, ACCOUNT
        return {
            "kinesis": f"arn:aws:kinesis:{region}:{account}:stream/{name}",
            "s3": f"arn:aws:s3:::{name}",
            "sns": f"arn:aws:sns:{region}:{account}:{name}",
            "sqs": f"arn:aws:sqs:{region}:{account}:{name}",
            "dynamodb": f"arn:aws:dynamodb:{region}:{account}:table/{name}",
            "lambda": f"arn:aws:lambda:{region}:{account}:function:{name}",
            "iam": f"arn:aws:iam::{account}:role/{name}",
        }.get(service, f"arn:aws:{service}:{region}:{account}:{name}")

    def get_att(self, logical_id: str, attribute: str) -> Any:
        resource = self.body.get("Resources", {}).get(logical_id)
        if resource is None:
            raise TemplateError(f"template.yaml: GetAtt of unknown resource {logical_id!r}")
        kind, phys = resource.get("Type", ""), self.physical_name(logical_id)
        service = {
            "AWS::Kinesis::Stream": "kinesis",
            "AWS::S3::Bucket": "s3",
            "AWS::SNS::Topic": "sns",
            "AWS::SQS::Queue": "sqs",
            "AWS::DynamoDB::Table": "dynamodb",
            "AWS::Serverless::SimpleTable": "dynamodb",
            "AWS::Serverless::Function": "lambda",
            "AWS::Lambda::Function": "lambda",
            "AWS::IAM::Role": "iam",
        }.get(kind, kind.split("::")[1].lower() if "::" in kind else "unknown")
        if attribute in ("Arn", "TopicArn", "StreamArn") and not (
            attribute == "StreamArn" and service == "dynamodb"
        ):
            return self.arn(service, phys)
        if attribute in ("QueueName", "TopicName", "Name"):
            return phys
        if attribute == "QueueUrl":
            return f"{self.moto_url}/{ACCOUNT}/{phys}"
        if attribute in ("DomainName", "RegionalDomainName"):
            return f"{phys}.s3.amazonaws.com"
        if attribute.startswith("Workgroup.") or attribute.startswith("Namespace."):
            return phys
        return f"{phys}.{attribute}"  # opaque value, good enough for the local stack

    def resolve(self, value: Any) -> Any:
        """Resolve intrinsic functions recursively; AWS::NoValue removes keys and list items."""
        if isinstance(value, Mapping):
            if len(value) == 1:
                ((key, arg),) = value.items()
                if key == "Ref":
                    return self.ref(str(arg))
                if key.startswith("Fn::") or key == "Condition":
                    return self._intrinsic(key, arg)
            out = {}
            for k, v in value.items():
                r = self.resolve(v)
                if r is not NO_VALUE:
                    out[str(k)] = r
            return out
        if isinstance(value, list):
            return [r for r in (self.resolve(v) for v in value) if r is not NO_VALUE]
        return value

    def _intrinsic(self, key: str, arg: Any) -> Any:
        if key == "Fn::Sub":
            text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))
            return self._sub(text, variables)
        if key == "Fn::GetAtt":
            parts = arg.split(".", 1) if isinstance(arg, str) else list(arg)
            return self.get_att(parts[0], self.resolve(parts[1]))
        if key == "Fn::Join":
            sep, items = arg
            return str(sep).join(str(x) for x in self.resolve(items))
        if key == "Fn::If":
            cond, yes, no = arg
            return self.resolve(yes if self.conditions.get(cond, False) else no)
        if key == "Fn::Select":
            index, items = self.resolve(arg)
            return items[int(index)]
        if key == "Fn::Split":
            sep, text = self.resolve(arg)
            return str(text).split(sep)
        if key == "Fn::FindInMap":
            name, top, second = self.resolve(arg)[:3]
            return self.body["Mappings"][name][top][second]
        if key == "Fn::ToJsonString":
            return json.dumps(self.resolve(arg))
        if key == "Fn::GetAZs":
            return [f"{self.region}a", f"{self.region}b"]
        if key in ("Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or", "Condition"):
            return self._condition({key: arg})
        raise TemplateError(f"template.yaml: {key} is not supported by the local stack")

    def _sub(self, text: str, variables: Mapping[str, Any]) -> str:
        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                logical_id, attribute = name.split(".", 1)
                return str(self.get_att(logical_id, attribute))
            return str(self.ref(name))

        return re.sub(r"\$\{([^}]+)\}", replace, text)

    def _condition(self, expr: Any) -> bool:
        if not isinstance(expr, Mapping):
            return bool(expr)
        ((key, arg),) = expr.items()
        if key == "Condition":
            return self.conditions[arg] if arg in self.conditions else self._named_condition(arg)
        if key == "Fn::Equals":
            a, b = (self.resolve(x) for x in arg)
            return str(a) == str(b)
        if key == "Fn::Not":
            return not self._condition(arg[0])
        if key == "Fn::And":
            return all(self._condition(x) for x in arg)
        if key == "Fn::Or":
            return any(self._condition(x) for x in arg)
        raise TemplateError(f"template.yaml: unsupported condition function {key}")

    def _named_condition(self, name: str) -> bool:
        definitions = self.body.get("Conditions") or {}
        if name not in definitions:
            raise TemplateError(f"template.yaml: unknown condition {name!r}")
        self.conditions[name] = self._condition(definitions[name])
        return self.conditions[name]


def stack_name_from_samconfig(repo: Path = REPO) -> str:
    """The stack name `sam deploy` would use, so local names match a default deployment."""
    path = repo / "samconfig.toml"
    if not path.exists():
        return DEFAULT_STACK
    try:
        config = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError:
        return DEFAULT_STACK
    for section in ("deploy", "global"):
        name = config.get("default", {}).get(section, {}).get("parameters", {}).get("stack_name")
        if name:
            return str(name)
    return DEFAULT_STACK


def load_template(
    path: Path = TEMPLATE,
    *,
    stack_name: str | None = None,
    region: str = "us-east-1",
    overrides: Mapping[str, Any] | None = None,
    moto_url: str = "http://127.0.0.1:5000",
) -> Template:
    """Parse the template, settle parameters (defaults, then overrides) and conditions."""
    import yaml

    if not Path(path).exists():
        raise TemplateError(f"{path} not found: the local stack creates what the SAM template declares")
    try:
        body = yaml.load(Path(path).read_text(), Loader=_cfn_loader())
    except yaml.YAMLError as exc:
        raise TemplateError(f"{path}: not a valid template: {exc}") from exc
    if not isinstance(body, dict) or "Resources" not in body:
        raise TemplateError(f"{path}: no Resources section")
    parameters: dict[str, Any] = {}
    for name, spec in (body.get("Parameters") or {}).items():
        if "Default" in spec:
            default = spec["Default"]
            parameters[name] = default.split(",") if spec.get("Type") == "CommaDelimitedList" else default
    unknown = set(overrides or {}) - set(body.get("Parameters") or {})
    if unknown:
        raise TemplateError(f"template.yaml has no parameter(s) {sorted(unknown)}")
    parameters.update(overrides or {})
    template = Template(
        body, stack_name or stack_name_from_samconfig(), region, parameters, moto_url=moto_url
    )
    for name in body.get("Conditions") or {}:
        template._named_condition(name)
    return template


def _cfn_loader() -> Any:
    """PyYAML's SafeLoader plus CloudFormation's short-form tags (`!Ref x` -> {"Ref": "x"}, ...).

    (cfn-lint's own loader does the same but takes seconds to import.)
    """
    import yaml

    class CfnLoader(yaml.SafeLoader):
        pass

    def short_form(loader: Any, suffix: str, node: Any) -> dict[str, Any]:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        if suffix == "Ref" or suffix == "Condition":
            return {suffix: value}
        if suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
        return {f"Fn::{suffix}": value}

    CfnLoader.add_multi_constructor("!", short_form)
    return CfnLoader
