// Entry of a `verify --workers` thread: tsx's loader registers in the main thread only, so the
// worker registers it itself before it imports the TypeScript worker (cli/campaign-worker.ts).
import { register } from 'tsx/esm/api';

register();
await import('./campaign-worker.ts');
