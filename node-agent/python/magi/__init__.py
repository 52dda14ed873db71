"""magi: the original MAGI's agent API (Python 3) over the MAGI-rs agent protocol.

Shipped with the node agent and put on agents' PYTHONPATH beside magi_agent.py, so that an
agent written for the original (`class X(DispatchAgent)`, `@agentmethod()`, `getAgent()`,
`database.getCollection(...)`) runs unchanged under Python 3. A module with an `.idl` and no
magi-agent.json is started by `python3 -m magi.original` (see original.py). What exists:

    magi.util.agent          Agent, DispatchAgent, NonBlockingDispatchAgent,
                             ReportingDispatchAgent, SharedServer, agentmethod
    magi.util.calls          dispatchCall, doMessageAction
    magi.util.processAgent   initializeProcessAgent
    magi.util.database       getCollection (insert/find/remove), getData, isDBEnabled
    magi.util.helpers        entrylog, exitlog, makeDir, toSet, loadYaml, writeYaml, ...
    magi.util.execl          run, spawn, execAndRead, pipeIn, pipeOut, pipeBoth
    magi.util.config         getNodeName, getExperiment, getProject, getLogDir, getTempDir
    magi.testbed.testbed     node name, experiment, the node's addresses, peers' addresses
    magi.messaging.magimessage.MAGIMessage

docs/agents.md ("Original-style agents") says what differs from the original.
"""
