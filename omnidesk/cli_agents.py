"""``omnidesk agents ...``: agent accounts and their API tokens, as an admin manages them.

    agents add NAME EMAIL --role agent|admin [--team Q]... [--label L] [--json]
    agents list [--all] [--limit N] [--json]
    agents update EMAIL [--name N] [--role R] [--team Q]... | [--no-teams] [--json]
    agents deactivate EMAIL | agents activate EMAIL
    agents token EMAIL [--label L] [--json]          another token for the agent
    agents tokens [EMAIL] [--all] [--json]           by prefix; never the secret
    agents revoke PREFIX | agents rotate PREFIX [--json]

A token is printed once, when it is issued: the store keeps only its hash, so nobody can show
it again (rotate it instead). Every command opens the store the way the service does, so an
embedded SQLite is created and migrated on first use and PostgreSQL must be upgraded first.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from config.settings import Settings
from omnidesk.cli import _app, _more, _print_json
from omnidesk.cli_routing import _safe_url
from omnidesk.errors import CliError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from tickets.agents import AgentRecord, IssuedToken

__all__ = ["register", "store_roster"]

_ROLES = ("agent", "admin")
T = TypeVar("T")


def register(sub: Any) -> None:
    """Add the ``agents`` command and its subcommands to the top-level parser."""
    agents = sub.add_parser("agents", help="agent accounts and their API tokens").add_subparsers(
        dest="agents_command", required=True, metavar="COMMAND")

    add = agents.add_parser("add", help="create an agent and print its first API token (shown once)")
    add.add_argument("name", help="the agent's name, e.g. 'Ana Lima' (quote it)")
    add.add_argument("email", help="the agent's email: how the rules file and assignment name it")
    add.add_argument("--role", required=True, choices=_ROLES, help="agent works tickets; admin also manages agents")
    add.add_argument("--team", action="append", default=[], metavar="QUEUE",
                     help="a queue the agent works (repeatable)")
    add.add_argument("--label", default="", help="what the first token is for, e.g. 'laptop'")
    add.add_argument("--json", action="store_true", help="print {agent, token} as JSON")
    add.set_defaults(handler=cmd_agents_add)

    ls = agents.add_parser("list", help="active agents (--all: inactive ones too)")
    ls.add_argument("--all", action="store_true", help="include inactive agents")
    ls.add_argument("--limit", type=_positive, default=100)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler=cmd_agents_list)

    up = agents.add_parser("update", help="change an agent's name, role or teams")
    up.add_argument("email")
    up.add_argument("--name")
    up.add_argument("--role", choices=_ROLES)
    teams = up.add_mutually_exclusive_group()
    teams.add_argument("--team", action="append", metavar="QUEUE",
                       help="the queues the agent works, replacing the current ones (repeatable)")
    teams.add_argument("--no-teams", action="store_true", help="the agent works no queue")
    up.add_argument("--json", action="store_true")
    up.set_defaults(handler=cmd_agents_update)

    for name, active, text in (("deactivate", False, "stop an agent: its tokens fail, assignment skips it"),
                               ("activate", True, "let a deactivated agent work again")):
        p = agents.add_parser(name, help=text)
        p.add_argument("email")
        p.add_argument("--json", action="store_true")
        p.set_defaults(handler=_cmd_set_active(active))

    token = agents.add_parser("token", help="issue the agent another API token (shown once)")
    token.add_argument("email")
    token.add_argument("--label", default="", help="what the token is for, e.g. 'zapier'")
    token.add_argument("--json", action="store_true")
    token.set_defaults(handler=cmd_agents_token)

    tokens = agents.add_parser("tokens", help="API tokens by prefix (never the secret)")
    tokens.add_argument("email", nargs="?", help="only this agent's tokens")
    tokens.add_argument("--all", action="store_true", help="include revoked tokens")
    tokens.add_argument("--json", action="store_true")
    tokens.set_defaults(handler=cmd_agents_tokens)

    revoke = agents.add_parser("revoke", help="revoke a token at once")
    revoke.add_argument("prefix", help="the token's prefix (see `omnidesk agents tokens`)")
    revoke.set_defaults(handler=cmd_agents_revoke)

    rotate = agents.add_parser("rotate", help="revoke a token and print its replacement (shown once)")
    rotate.add_argument("prefix", help="the token's prefix (see `omnidesk agents tokens`)")
    rotate.add_argument("--json", action="store_true")
    rotate.set_defaults(handler=cmd_agents_rotate)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of rows (1 or more)")
    return value


# --- the store --------------------------------------------------------------------------------
def _in_store(settings: Settings, work: Callable[[Session], T], *, write: bool = True) -> T:
    """Run ``work`` in one transaction and return its result once committed.

    Callers print only after this returns: a token is shown only once it is really stored.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from tickets.agents import AgentError

    try:
        app = _app(settings, load_rules=False)
    except SQLAlchemyError as exc:
        raise CliError(f"cannot open the store at {_safe_url(settings)}: {_reason(exc)}", 1) from None
    try:
        with app.db.write() if write else app.db.read() as session:
            return work(session)
    except AgentError as exc:
        raise CliError(exc.message, 1 if exc.code.endswith("_not_found") else 2) from None
    except SQLAlchemyError as exc:
        raise CliError(f"cannot use the store at {_safe_url(settings)}: {_reason(exc)}", 1) from None
    finally:
        app.close()


def _reason(exc: Exception) -> str:
    """The driver's one-line reason, without SQLAlchemy's statement dump and help link."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


def store_roster(settings: Settings) -> tuple[dict[str, bool] | None, str]:
    """The store's agents (email → active) for ``rules check``, or None and one line saying why not.

    Never creates the store: checking a rules file must work on a machine without one (CI).
    """
    from sqlalchemy.exc import SQLAlchemyError

    from routing.explain_stored import open_store
    from tickets.agents import agent_states

    where = _safe_url(settings)
    try:
        db = open_store(settings.effective_database_url)
    except SQLAlchemyError as exc:
        return None, f"agents not checked against the store: cannot open {where}: {_reason(exc)}"
    if db is None:
        return None, (f"agents not checked against the store: there is none at {where} yet "
                      "(`omnidesk db upgrade` or `omnidesk run` creates it)")
    try:
        with db.read() as session:
            return agent_states(session), ""
    except SQLAlchemyError as exc:
        return None, (f"agents not checked against the store: cannot read agents at {where} "
                      f"(run `omnidesk db upgrade`): {_reason(exc)}")
    finally:
        db.dispose()


# --- commands ---------------------------------------------------------------------------------
def cmd_agents_add(args: argparse.Namespace, settings: Settings) -> int:
    from tickets.agents import add_agent, issue_token

    def add(session: Session) -> IssuedToken:
        agent = add_agent(session, name=args.name, email=args.email, role=args.role, teams=args.team)
        return issue_token(session, agent.email, label=args.label)

    issued = _in_store(settings, add)
    _check_teams(settings, issued.agent.teams)
    if args.json:
        _print_json({"agent": issued.agent.to_dict(), "token": issued.token})
        return 0
    print(f"added {_describe(issued.agent)}")
    _print_token(issued)
    return 0


def cmd_agents_list(args: argparse.Namespace, settings: Settings) -> int:
    from tickets.agents import count_agents, list_agents

    def read(session: Session) -> tuple[list[AgentRecord], int, int]:
        agents = list_agents(session, include_inactive=args.all, limit=args.limit)
        return agents, count_agents(session, include_inactive=args.all), count_agents(session)

    agents, total, everyone = _in_store(settings, read, write=False)
    _more(len(agents), total, "agents", "--limit")
    if not args.all and everyone > total:
        hidden = everyone - total
        print(f"{hidden} inactive agent{'s' if hidden != 1 else ''} not shown; use --all to see them",
              file=sys.stderr)
    return _listing(
        args, [a.to_dict() for a in agents],
        "no agents yet: add one with `omnidesk agents add NAME EMAIL --role admin`" if not everyone
        else "no active agents",
        f"{'EMAIL':<32} {'NAME':<24} {'ROLE':<6} {'ACTIVE':<6} TEAMS",
        (f"{a.email[:32]:<32} {a.name[:24]:<24} {a.role:<6} {'yes' if a.active else 'no':<6} "
         f"{', '.join(a.teams) or '-'}" for a in agents),
    )


def cmd_agents_update(args: argparse.Namespace, settings: Settings) -> int:
    from tickets.agents import update_agent

    teams: Sequence[str] | None = [] if args.no_teams else args.team
    if args.name is None and args.role is None and teams is None:
        raise CliError("nothing to change: give --name, --role, --team or --no-teams")
    agent = _in_store(settings, lambda s: update_agent(s, args.email, name=args.name, role=args.role,
                                                       teams=teams))
    _check_teams(settings, teams or ())
    return _say_agent(args, agent, f"updated {_describe(agent)}")


def _cmd_set_active(active: bool) -> Callable[[argparse.Namespace, Settings], int]:
    def handler(args: argparse.Namespace, settings: Settings) -> int:
        from tickets.agents import agent_by_email, set_active

        def change(session: Session) -> tuple[AgentRecord | None, AgentRecord]:
            return agent_by_email(session, args.email), set_active(session, args.email, active)

        before, agent = _in_store(settings, change)
        if before is not None and before.active == active:
            text = f"{agent.email} is {'active' if active else 'inactive'} already"
        elif active:
            text = f"activated {agent.email}: its API tokens work again and assignment includes it"
        else:
            text = (f"deactivated {agent.email}: its API tokens stop working and assignment skips it "
                    f"(`omnidesk agents activate {agent.email}` undoes this)")
        return _say_agent(args, agent, text)

    return handler


def cmd_agents_token(args: argparse.Namespace, settings: Settings) -> int:
    from tickets.agents import issue_token

    issued = _in_store(settings, lambda s: issue_token(s, args.email, label=args.label))
    return _say_token(args, issued)


def cmd_agents_tokens(args: argparse.Namespace, settings: Settings) -> int:
    from tickets.agents import list_tokens

    tokens = _in_store(settings, lambda s: list_tokens(s, args.email, include_revoked=args.all), write=False)
    whose = f"{args.email} has" if args.email else "there are"
    return _listing(
        args, tokens,
        f"{whose} no {'' if args.all else 'unrevoked '}tokens; issue one with `omnidesk agents token EMAIL`",
        f"{'PREFIX':<14} {'AGENT':<32} {'LABEL':<16} {'CREATED':<16}  {'LAST USED':<16}  STATE",
        (f"{t['prefix']:<14} {t['agent'][:32]:<32} {t['label'][:16] or '-':<16} {_minute(t['created_at']):<16}  "
         f"{_minute(t['last_used_at']) or 'never':<16}  {t['state']}" for t in tokens),
    )


def cmd_agents_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from tickets.agents import revoke_token

    if _in_store(settings, lambda s: revoke_token(s, args.prefix)):
        print(f"revoked token {args.prefix}: requests with it are refused from now on")
    else:
        print(f"token {args.prefix} was revoked already")
    return 0


def cmd_agents_rotate(args: argparse.Namespace, settings: Settings) -> int:
    from tickets.agents import rotate_token

    issued = _in_store(settings, lambda s: rotate_token(s, args.prefix))
    if not args.json:
        print(f"revoked token {args.prefix}; its replacement:")
    return _say_token(args, issued)


def _check_teams(settings: Settings, teams: Sequence[str]) -> None:
    """Warn on stderr about a team that is no queue of the rules file: most likely a typo.

    Not refused: the queue may be added to the file after the agent (the store and the file
    change independently, as with ``rules check``).
    """
    if not teams:
        return
    from config.issues import did_you_mean
    from omnidesk.app import rules_path
    from routing.rules import RulesError, load_rules

    path = rules_path(settings)
    try:
        queues = load_rules(path).queues
    except RulesError:
        return  # `omnidesk rules check` reports a broken file; it does not concern the agent
    for team in teams:
        if team not in queues:
            print(f"warning: team {team!r} is not a queue in {path}{did_you_mean(team, queues)}; queues: "
                  f"{', '.join(queues)}", file=sys.stderr)


# --- output -----------------------------------------------------------------------------------
def _listing(args: argparse.Namespace, data: Sequence[Any], empty: str, header: str, rows: Iterable[str]) -> int:
    """A listing: JSON with --json, else a line when there is nothing, or a header and rows."""
    if args.json:
        _print_json(list(data))
    elif not data:
        print(empty)
    else:
        print(header)
        for row in rows:
            print(row)
    return 0


def _describe(agent: AgentRecord) -> str:
    teams = f"teams {', '.join(agent.teams)}" if agent.teams else "no teams"
    state = "" if agent.active else ", inactive"
    return f"{agent.name} <{agent.email}>: {agent.role}, {teams}{state}"


def _say_agent(args: argparse.Namespace, agent: AgentRecord, text: str) -> int:
    if args.json:
        _print_json(agent.to_dict())
    else:
        print(text)
    return 0


def _say_token(args: argparse.Namespace, issued: IssuedToken) -> int:
    if args.json:
        _print_json({"agent": issued.agent.to_dict(), "token": issued.token})
    else:
        _print_token(issued)
    return 0


def _print_token(issued: IssuedToken) -> None:
    print(f"API token for {issued.agent.email} (prefix {issued.prefix}):\n\n    {issued.token}\n")
    print("It will not be shown again: store it now. Send it as 'Authorization: Bearer <token>'; "
          f"revoke it with `omnidesk agents revoke {issued.prefix}`.")


def _minute(stamp: str | None) -> str:
    """An ISO timestamp to the minute, as the listings show times (UTC)."""
    return stamp[:16].replace("T", " ") if stamp else ""

