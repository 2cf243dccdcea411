"""The aliases checked as the MTAs will resolve them, without recursion (a chain of thousands of
aliases is walked with a stack): no alias silently replaces a mailbox, no local target bounces,
no loop, no chain longer than an MTA resolves.

"Keep a copy and forward" is an alias on a mailbox that lists the mailbox itself among its
targets (``alice -> [alice, alice@elsewhere]``): the mailbox keeps receiving, and that
self-reference is a delivery, not a loop (Postfix stops expanding an address found in its own
expansion; chasquid gets an internal name for the copy, mailhost.host.users).
"""

from __future__ import annotations

from mailhost.settings.messages import FieldError

# chasquid resolves aliases 10 levels deep (its recursionLimit), the last one the mailbox or
# outside address: at most 9 aliases in a chain (Postfix allows 1000: the smaller one applies,
# so that switching MTAs never breaks an alias)
MAX_CHAIN = 9
SHOWN_HOPS = 4


def effective_aliases(aliases: dict[str, list[str]], users: list[str],
                      domains: list[str]) -> dict[str, list[str]]:
    """The aliases the MTAs get: those set, and postmaster@ of each domain (to the first user)
    where it is not set (mailhost.host.users.aliases writes the same)."""
    result = dict(aliases)
    for domain in domains:
        if users:
            result.setdefault(f"postmaster@{domain}", [users[0]])
    return result


def check_aliases(aliases: dict[str, list[str]], users: list[str], domains: list[str],
                  parked: list[str]) -> None:
    """Raise FieldError (mail_aliases) for the first alias that would break mail."""
    mailboxes = set(users)
    everything = effective_aliases(aliases, users, domains)
    local, parked_set = set(domains), set(parked)
    for address, targets in aliases.items():
        if not targets:
            raise FieldError("mail_aliases", address, "expected at least one target")
        if address in mailboxes and address not in targets:
            raise FieldError(f"mail_aliases[{address}]", targets,
                             f"expected {address} among its targets: {address} is a mailbox "
                             "(mail_users), and an alias without it would stop the mailbox "
                             f"receiving; to keep a copy and forward, list [{address!r}, ...]")
        for target in targets:
            domain = target.rpartition("@")[2]
            if domain in parked_set:
                raise FieldError(f"mail_aliases[{address}]", target,
                                 f"expected a target that receives mail; {domain} is in "
                                 "parked_domains (its null MX refuses all mail)")
            if domain in local and target not in mailboxes and target not in everything:
                raise FieldError(f"mail_aliases[{address}]", target,
                                 "expected a mail user or an alias of this host: this address "
                                 "of a mail domain is neither, so mail to it would bounce")
    graph = {a: [t for t in ts if t in everything and not (t == a and a in mailboxes)]
             for a, ts in everything.items()}
    loop = _loop(graph)
    if loop:
        raise FieldError("mail_aliases", loop[0], "expected no alias loop: " + _hops(loop))
    chain = _longest_chain(graph)
    if len(chain) > MAX_CHAIN:
        raise FieldError("mail_aliases", chain[0],
                         f"expected at most {MAX_CHAIN} aliases in a chain (chasquid resolves "
                         f"{MAX_CHAIN + 1} levels, then refuses the message); this one has "
                         f"{len(chain)}: " + _hops(chain))


def _loop(graph: dict[str, list[str]]) -> list[str] | None:
    """A cycle of GRAPH as its path (first node repeated at the end), or None; depth-first with
    an explicit stack."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in graph:
        if start in state:
            continue
        state[start], path, stack = 1, [start], [iter(graph[start])]
        while stack:
            following = next(stack[-1], None)
            if following is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(following) == 1:
                return path[path.index(following):] + [following]
            elif following not in state:
                state[following] = 1
                path.append(following)
                stack.append(iter(graph[following]))
    return None


def _longest_chain(graph: dict[str, list[str]]) -> list[str]:
    """The longest chain of aliases in an acyclic GRAPH, as its path (post-order, a stack)."""
    depth: dict[str, int] = {}
    best_next: dict[str, str | None] = {}
    for start in graph:
        stack = [start]
        while stack:
            node = stack[-1]
            if node in depth:
                stack.pop()
                continue
            pending = [t for t in graph[node] if t not in depth]
            if pending:
                stack.extend(pending)
                continue
            following = max(graph[node], key=lambda t: depth[t], default=None)
            depth[node] = 1 + (depth[following] if following else 0)
            best_next[node] = following
            stack.pop()
    if not depth:
        return []
    node: str | None = max(depth, key=lambda a: depth[a])
    chain = []
    while node is not None:
        chain.append(node)
        node = best_next[node]
    return chain


def _hops(path: list[str]) -> str:
    if len(path) <= 2 * SHOWN_HOPS:
        return " -> ".join(path)
    return (" -> ".join(path[:SHOWN_HOPS]) + f" -> ... ({len(path) - 2 * SHOWN_HOPS} more) -> "
            + " -> ".join(path[-SHOWN_HOPS:]))
