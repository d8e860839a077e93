// Preloaded by the pool suite that test/mpi/mpi.test.ts runs under mpirun: `bun test` fires no
// process "exit" event, so MPI_Finalize (which mpirun requires of every rank) runs from here.
import { afterAll } from "bun:test";
import { closeMpiTestJob } from "../helpers.ts";

afterAll(() => closeMpiTestJob());
