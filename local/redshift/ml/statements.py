"""Parse Redshift ML statements: CREATE MODEL, SHOW MODEL, DROP MODEL.

sqlglot has no grammar for these, so its Redshift tokenizer (which already knows string literals,
quoted identifiers and comments) feeds a small recursive-descent parser that follows the keyword
order of Redshift's documented CREATE MODEL syntax. Anything Redshift would reject is rejected
here with a Redshift-like message before any work is done.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sqlglot.dialects.redshift import Redshift
from sqlglot.errors import TokenError
from sqlglot.tokens import Token, TokenType

SYNTAX_ERROR = "42601"
FEATURE_NOT_SUPPORTED = "0A000"
INVALID_PARAMETER = "22023"

AUTO_ON_OBJECTIVES = {"MSE", "ACCURACY", "F1", "F1_MACRO", "AUC"}
XGBOOST_OBJECTIVES = {
    "reg:squarederror",
    "reg:squaredlogerror",
    "reg:logistic",
    "reg:pseudohubererror",
    "reg:tweedie",
    "binary:logistic",
    "binary:hinge",
    "multi:softmax",
}
FORECAST_OBJECTIVES = {"RMSE", "WAPE", "MAPE", "MASE", "AVERAGEWEIGHTEDQUANTILELOSS"}
MODEL_TYPES = {"XGBOOST", "MLP", "LINEAR_LEARNER", "KMEANS", "FORECAST"}
PROBLEM_TYPES = {"REGRESSION", "BINARY_CLASSIFICATION", "MULTICLASS_CLASSIFICATION"}

# SageMaker XGBoost hyperparameter names accepted in HYPERPARAMETERS DEFAULT EXCEPT (...),
# mapped to xgboost's native parameter names and the value type they take.
XGBOOST_HYPERPARAMETERS: dict[str, tuple[str, type]] = {
    "NUM_ROUND": ("num_boost_round", int),
    "EARLY_STOPPING_ROUNDS": ("early_stopping_rounds", int),
    "NUM_CLASS": ("num_class", int),
    "MAX_DEPTH": ("max_depth", int),
    "ETA": ("eta", float),
    "GAMMA": ("gamma", float),
    "MIN_CHILD_WEIGHT": ("min_child_weight", float),
    "MAX_DELTA_STEP": ("max_delta_step", float),
    "SUBSAMPLE": ("subsample", float),
    "COLSAMPLE_BYTREE": ("colsample_bytree", float),
    "COLSAMPLE_BYLEVEL": ("colsample_bylevel", float),
    "COLSAMPLE_BYNODE": ("colsample_bynode", float),
    "LAMBDA": ("lambda", float),
    "ALPHA": ("alpha", float),
    "SCALE_POS_WEIGHT": ("scale_pos_weight", float),
    "BASE_SCORE": ("base_score", float),
    "MAX_BIN": ("max_bin", int),
    "MAX_LEAVES": ("max_leaves", int),
    "GROW_POLICY": ("grow_policy", str),
    "TREE_METHOD": ("tree_method", str),
    "SEED": ("seed", int),
    "TWEEDIE_VARIANCE_POWER": ("tweedie_variance_power", float),
    "EVAL_METRIC": ("eval_metric", str),
}

SETTINGS_KEYS = {
    "S3_BUCKET",
    "TAGS",
    "KMS_KEY_ID",
    "S3_GARBAGE_COLLECT",
    "MAX_CELLS",
    "MAX_RUNTIME",
    "HORIZON",
    "FREQUENCY",
    "PERCENTILES",
    "MAX_BATCH_ROWS",
}
FORECAST_SETTINGS = {"HORIZON", "FREQUENCY", "PERCENTILES"}
DEFAULT_MAX_CELLS = 1_000_000
DEFAULT_MAX_RUNTIME = 5400


class MLStatementError(Exception):
    """A statement Redshift would reject; carries Redshift-like text and a SQLSTATE."""

    def __init__(self, message: str, code: str = SYNTAX_ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass
class CreateModel:
    schema: str
    name: str
    source_sql: str  # a SELECT, ready to run (a bare table name becomes SELECT * FROM it)
    query_text: str  # what SHOW MODEL prints as Query
    target: str
    function: str
    function_arg_types: list[str] | None
    iam_role: str
    auto: bool
    model_type: str | None
    problem_type: str | None
    objective: str | None
    preprocessors: str | None
    hyperparameters: dict[str, str] = field(default_factory=dict)  # Redshift names, upper case
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def max_cells(self) -> int:
        return int(self.settings.get("MAX_CELLS", DEFAULT_MAX_CELLS))

    @property
    def max_runtime(self) -> int:
        return int(self.settings.get("MAX_RUNTIME", DEFAULT_MAX_RUNTIME))


@dataclass
class ShowModel:
    name: str | None  # None means SHOW MODEL ALL


@dataclass
class DropModel:
    name: str
    if_exists: bool


Statement = CreateModel | ShowModel | DropModel

_HEAD = re.compile(r"^\s*(?:--[^\n]*\n\s*|/\*.*?\*/\s*)*(CREATE|SHOW|DROP)\s+MODEL\b", re.I | re.S)


def is_model_statement(sql: str) -> bool:
    """True for CREATE MODEL / SHOW MODEL / DROP MODEL (leading comments allowed)."""
    return bool(_HEAD.match(sql))


def parse(sql: str) -> Statement:
    head = _HEAD.match(sql)
    if head is None:
        raise MLStatementError("syntax error: expected CREATE MODEL, SHOW MODEL or DROP MODEL")
    verb, rest = head.group(1).upper(), sql[head.end() :]
    try:  # the verb is cut off first: sqlglot tokenizes SHOW ... as one opaque command token
        tokens = Redshift().tokenize(rest)
    except TokenError as exc:
        raise MLStatementError(f"syntax error: {exc}") from exc
    tokens = [t for t in tokens if t.token_type != TokenType.SEMICOLON]
    parser = _Parser(rest, tokens)
    statement = {"CREATE": parser.create, "SHOW": parser.show, "DROP": parser.drop}[verb]()
    parser.end()
    return statement


class _Parser:
    def __init__(self, sql: str, tokens: list[Token]) -> None:
        self.sql = sql
        self.tokens = tokens
        self.pos = 0

    # -- token helpers -------------------------------------------------------------------------

    def _peek(self) -> Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _error(self, expected: str) -> MLStatementError:
        token = self._peek()
        where = f'at or near "{token.text}"' if token else "at end of input"
        return MLStatementError(f"syntax error {where}: expected {expected}")

    def at(self, *words: str) -> bool:
        token = self._peek()
        return (
            bool(token)
            and token.token_type not in (TokenType.STRING, TokenType.IDENTIFIER)
            and (token.text.upper() in words)
        )

    def accept(self, *words: str) -> str | None:
        if self.at(*words):
            self.pos += 1
            return self.tokens[self.pos - 1].text.upper()
        return None

    def expect(self, *words: str) -> str:
        word = self.accept(*words)
        if word is None:
            raise self._error(" or ".join(words))
        return word

    def word(self) -> str:
        token = self._peek()
        if token is None or token.token_type == TokenType.STRING:
            raise self._error("a keyword")
        self.pos += 1
        return token.text.upper()

    def identifier(self, what: str) -> str:
        token = self._peek()
        if token is None or token.token_type in (TokenType.STRING, TokenType.NUMBER) or token.text in "(),.":
            raise self._error(what)
        self.pos += 1
        # Redshift folds unquoted identifiers to lower case (and, by default, quoted ones too).
        return token.text.lower()

    def qualified_name(self, what: str) -> tuple[str, str]:
        first = self.identifier(what)
        if self._peek() and self._peek().token_type == TokenType.DOT:
            self.pos += 1
            return first, self.identifier(what)
        return "public", first

    def string(self, what: str) -> str:
        token = self._peek()
        if token is None or token.token_type != TokenType.STRING:
            raise self._error(what)
        self.pos += 1
        return token.text

    def literal(self, what: str) -> str:
        """A setting or hyperparameter value: 'string', number or bare word (on/off)."""
        token = self._peek()
        if token is None or token.text in "(),":
            raise self._error(what)
        self.pos += 1
        return token.text

    def punct(self, token_type: TokenType, text: str) -> None:
        token = self._peek()
        if token is None or token.token_type != token_type:
            raise self._error(f'"{text}"')
        self.pos += 1

    def at_punct(self, token_type: TokenType) -> bool:
        token = self._peek()
        return bool(token) and token.token_type == token_type

    def end(self) -> None:
        if self._peek() is not None:
            raise self._error("end of statement")

    def parenthesised_sql(self) -> str:
        """The raw text between a '(' and its matching ')'."""
        open_token = self.tokens[self.pos]
        self.punct(TokenType.L_PAREN, "(")
        depth = 1
        while self._peek() is not None:
            token = self.tokens[self.pos]
            self.pos += 1
            if token.token_type == TokenType.L_PAREN:
                depth += 1
            elif token.token_type == TokenType.R_PAREN:
                depth -= 1
                if depth == 0:
                    return self.sql[open_token.end + 1 : token.start].strip()
        raise MLStatementError("syntax error at end of input: unbalanced parentheses in FROM (query)")

    def key_value_list(self, what: str) -> dict[str, str]:
        """( KEY value [, KEY value ...] ) with upper-cased keys; a repeated key is an error."""
        self.punct(TokenType.L_PAREN, "(")
        values: dict[str, str] = {}
        while True:
            key = self.word()
            if key in values:
                raise MLStatementError(f"{what} {key} is specified more than once", INVALID_PARAMETER)
            values[key] = self.literal(f"a value for {key}")
            if self.at_punct(TokenType.COMMA):
                self.pos += 1
                continue
            self.punct(TokenType.R_PAREN, ")")
            return values

    # -- statements ----------------------------------------------------------------------------

    def show(self) -> ShowModel:
        if self.accept("ALL"):
            return ShowModel(None)
        return ShowModel(self.qualified_name("a model name")[1])

    def drop(self) -> DropModel:
        if_exists = False
        if self.accept("IF"):
            self.expect("EXISTS")
            if_exists = True
        return DropModel(self.qualified_name("a model name")[1], if_exists)

    def create(self) -> CreateModel:
        schema, name = self.qualified_name("a model name")
        self.expect("FROM")
        if self.at_punct(TokenType.L_PAREN):
            query = self.parenthesised_sql()
            if not re.match(r"^\(*\s*(SELECT|WITH)\b", query, re.I):
                raise MLStatementError("syntax error: FROM ( query ) must hold a SELECT statement")
            source_sql, query_text = query, query
        elif self._peek() is not None and self._peek().token_type == TokenType.STRING:
            raise MLStatementError(
                "CREATE MODEL FROM 'job_name' (bring your own model) is not supported by the local "
                "Redshift ML emulator",
                FEATURE_NOT_SUPPORTED,
            )
        else:
            table_schema, table = self.qualified_name("a table name or ( query )")
            qualified = f'"{table_schema}"."{table}"' if table_schema != "public" else f'"{table}"'
            source_sql, query_text = f"SELECT * FROM {qualified}", f'SELECT * FROM "{table.upper()}"'
        self.expect("TARGET")
        target = self.identifier("a target column")
        self.expect("FUNCTION")
        function = self.identifier("a function name")
        arg_types = None
        if self.at_punct(TokenType.L_PAREN):
            arg_types = self._type_list()
        if self.accept("RETURNS"):
            raise MLStatementError(
                "RETURNS is supported only for bring-your-own-model (BYOM) models", FEATURE_NOT_SUPPORTED
            )
        if self.at("SAGEMAKER"):
            raise MLStatementError(
                "SAGEMAKER endpoints (BYOM remote inference) are not supported by the local emulator",
                FEATURE_NOT_SUPPORTED,
            )
        self.expect("IAM_ROLE")
        iam_role = "default" if self.accept("DEFAULT") else self.string("default or an IAM role ARN")
        auto = True
        if self.accept("AUTO"):
            auto = self.expect("ON", "OFF") == "ON"
        model_type = None
        if self.accept("MODEL_TYPE"):
            model_type = self.word()
            if model_type not in MODEL_TYPES:
                raise MLStatementError(
                    f"invalid MODEL_TYPE {model_type}: expected one of {sorted(MODEL_TYPES)}"
                )
        problem_type = None
        if self.accept("PROBLEM_TYPE"):
            problem_type = self.word()
            if problem_type not in PROBLEM_TYPES:
                raise MLStatementError(
                    f"invalid PROBLEM_TYPE {problem_type}: expected one of {sorted(PROBLEM_TYPES)}"
                )
        objective = self.string("an objective in quotes") if self.accept("OBJECTIVE") else None
        preprocessors = self.string("a preprocessors string") if self.accept("PREPROCESSORS") else None
        hyperparameters: dict[str, str] = {}
        has_hyperparameters = False
        if self.accept("HYPERPARAMETERS"):
            has_hyperparameters = True
            self.expect("DEFAULT")
            if self.accept("EXCEPT"):
                hyperparameters = self.key_value_list("hyperparameter")
        self.expect("SETTINGS")
        settings = self.key_value_list("setting")
        statement = CreateModel(
            schema=schema,
            name=name,
            source_sql=source_sql,
            query_text=query_text,
            target=target,
            function=function,
            function_arg_types=arg_types,
            iam_role=iam_role,
            auto=auto,
            model_type=model_type,
            problem_type=problem_type,
            objective=objective,
            preprocessors=preprocessors,
            hyperparameters=hyperparameters,
            settings=settings,
        )
        _validate(statement, has_hyperparameters)
        return statement

    def _type_list(self) -> list[str]:
        self.punct(TokenType.L_PAREN, "(")
        types: list[str] = []
        current: list[str] = []
        depth = 0
        while self._peek() is not None:
            token = self.tokens[self.pos]
            self.pos += 1
            if token.token_type == TokenType.L_PAREN:
                depth += 1
            elif token.token_type == TokenType.R_PAREN:
                if depth == 0:
                    if current:
                        types.append(" ".join(current).lower())
                    return types
                depth -= 1
            elif token.token_type == TokenType.COMMA and depth == 0:
                types.append(" ".join(current).lower())
                current = []
                continue
            current.append(token.text)
        raise MLStatementError(
            "syntax error at end of input: unbalanced parentheses in FUNCTION argument types"
        )


def _validate(s: CreateModel, has_hyperparameters: bool) -> None:
    """The option combinations Redshift refuses, checked before any data is read."""
    unknown = sorted(set(s.settings) - SETTINGS_KEYS)
    if unknown:
        raise MLStatementError(f"unknown SETTINGS option {unknown[0]}", INVALID_PARAMETER)
    if "S3_BUCKET" not in s.settings:
        raise MLStatementError("SETTINGS must include S3_BUCKET", INVALID_PARAMETER)
    for key in ("MAX_CELLS", "MAX_RUNTIME", "MAX_BATCH_ROWS"):
        if key in s.settings and not re.fullmatch(r"\d+", s.settings[key]):
            raise MLStatementError(
                f"{key} must be a positive integer, got {s.settings[key]!r}", INVALID_PARAMETER
            )
        if key in s.settings and int(s.settings[key]) <= 0:
            raise MLStatementError(
                f"{key} must be a positive integer, got {s.settings[key]!r}", INVALID_PARAMETER
            )
    if "S3_GARBAGE_COLLECT" in s.settings and s.settings["S3_GARBAGE_COLLECT"].upper() not in ("ON", "OFF"):
        raise MLStatementError("S3_GARBAGE_COLLECT must be ON or OFF", INVALID_PARAMETER)
    if "MAX_BATCH_ROWS" in s.settings:
        raise MLStatementError("MAX_BATCH_ROWS is valid only for BYOM remote inference", INVALID_PARAMETER)
    if s.model_type in ("MLP", "KMEANS", "FORECAST"):
        raise MLStatementError(
            f"MODEL_TYPE {s.model_type} is not supported by the local Redshift ML emulator "
            "(it trains XGBOOST and LINEAR_LEARNER models)",
            FEATURE_NOT_SUPPORTED,
        )
    forecast = sorted(FORECAST_SETTINGS & set(s.settings))
    if forecast:
        raise MLStatementError(f"{forecast[0]} is valid only for MODEL_TYPE FORECAST", INVALID_PARAMETER)
    if s.auto:
        if has_hyperparameters:
            raise MLStatementError("HYPERPARAMETERS is supported only with AUTO OFF", INVALID_PARAMETER)
        if s.objective is not None and s.objective.upper() not in AUTO_ON_OBJECTIVES:
            raise MLStatementError(
                f"invalid OBJECTIVE '{s.objective}' for AUTO ON: expected one of MSE, Accuracy, F1, F1_Macro, AUC",
                INVALID_PARAMETER,
            )
        return
    if s.model_type is None:
        raise MLStatementError("MODEL_TYPE is required with AUTO OFF", INVALID_PARAMETER)
    if s.model_type != "XGBOOST":
        raise MLStatementError(
            f"MODEL_TYPE {s.model_type} with AUTO OFF is not supported by the local Redshift ML emulator",
            FEATURE_NOT_SUPPORTED,
        )
    if s.problem_type is not None:
        raise MLStatementError("PROBLEM_TYPE is not supported with AUTO OFF", INVALID_PARAMETER)
    if s.objective is None:
        raise MLStatementError(
            "OBJECTIVE is required with AUTO OFF and MODEL_TYPE XGBOOST", INVALID_PARAMETER
        )
    if s.objective not in XGBOOST_OBJECTIVES:
        raise MLStatementError(
            f"invalid OBJECTIVE '{s.objective}' for MODEL_TYPE XGBOOST: expected one of "
            + ", ".join(sorted(XGBOOST_OBJECTIVES)),
            INVALID_PARAMETER,
        )
    if s.preprocessors is not None and s.preprocessors.strip().lower() != "none":
        raise MLStatementError("PREPROCESSORS must be 'none' with AUTO OFF", INVALID_PARAMETER)
    for key, value in s.hyperparameters.items():
        if key == "OBJECTIVE":
            raise MLStatementError(
                "OBJECTIVE is not a hyperparameter: use the OBJECTIVE clause", INVALID_PARAMETER
            )
        if key not in XGBOOST_HYPERPARAMETERS:
            raise MLStatementError(f"unknown XGBoost hyperparameter {key}", INVALID_PARAMETER)
        kind = XGBOOST_HYPERPARAMETERS[key][1]
        try:
            kind(value)
        except ValueError:
            raise MLStatementError(
                f"hyperparameter {key} expects a {kind.__name__} value, got '{value}'", INVALID_PARAMETER
            ) from None
    if s.objective == "multi:softmax" and "NUM_CLASS" not in s.hyperparameters:
        raise MLStatementError("NUM_CLASS is required with OBJECTIVE 'multi:softmax'", INVALID_PARAMETER)
