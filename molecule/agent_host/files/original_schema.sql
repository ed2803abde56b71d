-- A database as the ORIGINAL agent-workflow hooks left it (before agentmon existed): the
-- 4-column sessions shape (the agent hook created it first), the old tool_uses table, the
-- original's two indexes, local-time timestamps without a zone, a row still running.
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY,
    start_time TIMESTAMP,
    end_time TIMESTAMP,
    status TEXT DEFAULT 'active'
);
CREATE TABLE IF NOT EXISTS agent_invocations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    timestamp TIMESTAMP,
    session_id TEXT,
    event_type TEXT,
    phase TEXT,
    agent_name TEXT,
    agent_type TEXT,
    model TEXT,
    prompt TEXT,
    parent_agent TEXT,
    ticket_id TEXT,
    start_time TIMESTAMP,
    end_time TIMESTAMP,
    duration_seconds REAL,
    status TEXT,
    error TEXT,
    result_summary TEXT,
    raw_input JSON,
    raw_output JSON
);
CREATE TABLE IF NOT EXISTS agent_tool_uses (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    timestamp TIMESTAMP,
    session_id TEXT,
    agent_name TEXT,
    agent_invocation_id INTEGER,
    tool_name TEXT,
    tool_input JSON,
    tool_output JSON,
    duration_seconds REAL,
    status TEXT,
    error TEXT,
    sequence_number INTEGER,
    start_time TIMESTAMP,
    end_time TIMESTAMP
);
CREATE INDEX IF NOT EXISTS idx_agent_tool_uses_agent_tool ON agent_tool_uses(agent_name, tool_name);
CREATE INDEX IF NOT EXISTS idx_agent_tool_uses_session ON agent_tool_uses(session_id);
CREATE TABLE IF NOT EXISTS tool_uses (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    timestamp TIMESTAMP,
    session_id TEXT,
    tool_name TEXT,
    tool_input TEXT,
    tool_output TEXT,
    duration_seconds REAL
);

INSERT INTO sessions VALUES
    ('sess-old-1', '2025-05-01T09:00:00.000001', '2025-05-01T10:00:00.000001', 'completed'),
    ('sess-old-2', '2025-05-02T14:30:00.123456', NULL, 'active'),
    ('sess-old-3', '2025-05-03T08:15:00.5', '2025-05-03T08:45:00.5', 'completed');

INSERT INTO agent_invocations (timestamp, session_id, event_type, phase, agent_name, agent_type,
    model, prompt, parent_agent, ticket_id, start_time, end_time, duration_seconds, status, error,
    result_summary, raw_input, raw_output) VALUES
    ('2025-05-01T09:01:00', 'sess-old-1', 'PreToolUse', 'planning', 'jira-analyst', 'jira-analyst',
     'sonnet', 'Analyse ticket', 'main', 'PROJ-1', '2025-05-01T09:01:00', '2025-05-01T09:03:00',
     120.0, 'completed', NULL, 'done', '{"description": "analyse"}', '{"ok": true}'),
    ('2025-05-01T09:05:00', 'sess-old-1', 'PreToolUse', 'implementation', 'python-developer',
     'python-developer', 'opus', 'Implement', 'main', 'PROJ-1', '2025-05-01T09:05:00',
     '2025-05-01T09:20:00', NULL, 'completed', NULL, NULL, '{}', '{}'),
    ('2025-05-02T14:31:00', 'sess-old-2', 'PreToolUse', 'review', 'code-reviewer', 'code-reviewer',
     'sonnet', 'Review', 'main', NULL, '2025-05-02T14:31:00', NULL, NULL, 'running', NULL, NULL,
     '{}', NULL),
    ('2025-05-03T08:16:00', 'sess-old-3', 'SubagentStop', NULL, 'test-runner', NULL, NULL, NULL,
     NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '{}', NULL),
    ('2025-05-03T08:20:00', 'sess-old-3', 'PreToolUse', 'testing', 'test-runner', 'test-runner',
     'haiku', 'Run tests', 'main', 'PROJ-2', '2025-05-03T08:20:00', '2025-05-03T08:30:00', 600.5,
     'completed', NULL, 'green', '{}', '{}');

INSERT INTO agent_tool_uses (timestamp, session_id, agent_name, agent_invocation_id, tool_name,
    tool_input, tool_output, duration_seconds, status, error, sequence_number, start_time, end_time)
    VALUES
    ('2025-05-01T09:01:10', 'sess-old-1', 'jira-analyst', 1, 'Read', '{}', '{}', 0.5, 'completed', NULL, 1, '2025-05-01T09:01:10', '2025-05-01T09:01:10.5'),
    ('2025-05-01T09:01:20', 'sess-old-1', 'jira-analyst', 1, 'Grep', '{}', '{}', 1.5, 'completed', NULL, 2, '2025-05-01T09:01:20', '2025-05-01T09:01:21.5'),
    ('2025-05-01T09:06:00', 'sess-old-1', 'python-developer', 2, 'Edit', '{}', '{}', NULL, 'completed', NULL, 1, '2025-05-01T09:06:00', '2025-05-01T09:06:02'),
    ('2025-05-01T09:07:00', 'sess-old-1', 'python-developer', 2, 'Bash', '{}', NULL, NULL, 'completed', NULL, 2, '2025-05-01T09:07:00', '2025-05-01T09:07:30'),
    ('2025-05-02T14:32:00', 'sess-old-2', 'code-reviewer', 3, 'Read', '{}', NULL, NULL, 'running', NULL, 1, '2025-05-02T14:32:00', NULL),
    ('2025-05-03T08:21:00', 'sess-old-3', 'test-runner', 5, 'Bash', '{}', '{}', 300.0, 'completed', NULL, 1, '2025-05-03T08:21:00', '2025-05-03T08:26:00'),
    ('2025-05-03T08:27:00', 'sess-old-3', 'test-runner', 5, 'mcp__github__get_issue', '{}', '{}', 2.0, 'completed', NULL, 2, '2025-05-03T08:27:00', '2025-05-03T08:27:02'),
    ('2025-05-03T08:28:00', 'sess-old-3', 'test-runner', 5, 'Bash', '{}', NULL, NULL, 'running', NULL, 3, '2025-05-03T08:28:00', NULL);

INSERT INTO tool_uses (timestamp, session_id, tool_name, tool_input, tool_output, duration_seconds) VALUES
    ('2025-04-30T17:00:00', 'sess-older', 'Read', '{}', '{}', 0.2),
    ('2025-04-30T17:01:00', 'sess-older', 'Write', '{}', '{}', 0.4);
