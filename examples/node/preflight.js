// Run before the tests (npm's pretest, and on import by the test file): the tests
// start a real authority with the repository's Python, so without it they could
// only fail one by one as "cancelled". Instead: one line saying what to build.
//
// SESSION_AUTHORITY_TEST_PYTHON names the Python that has the authority installed
// (default: the repository's .venv, which `make node-test` builds).

import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));

export const PYTHON =
  process.env.SESSION_AUTHORITY_TEST_PYTHON || path.resolve(HERE, '../../.venv/bin/python');

/** Why PYTHON cannot run the authority, or null when it can. */
export function pythonProblem() {
  const run = spawnSync(PYTHON, ['-c', 'import session_authority_server.cli'], {
    stdio: 'ignore',
    timeout: 30_000,
  });
  if (run.error?.code === 'ENOENT') return `${PYTHON} does not exist`;
  if (run.error) return `${PYTHON} cannot be run (${run.error.message})`;
  if (run.status !== 0) return `${PYTHON} has no session-authority[server] installed`;
  return null;
}

/** Exit with one line when the tests could not start an authority. */
export function preflight() {
  const problem = pythonProblem();
  if (problem !== null) {
    console.error(
      `examples/node: ${problem}: run \`make node-test\` in the repository root ` +
        '(it builds .venv first), or set SESSION_AUTHORITY_TEST_PYTHON to a Python ' +
        'with session-authority[server] installed',
    );
    process.exit(1);
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) preflight();
