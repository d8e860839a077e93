/**
 * alloctools: registered (pinned, keyed) memory for RDMA/DMA, on Bun. Start with
 * {@link openProvider} and {@link MemoryPool}; see the README for the tour.
 * @packageDocumentation
 */
export {
  AllocToolsError, SystemError, FabricError, LibraryLoadError, AllocToolsTypeError, AllocToolsRangeError,
  type AllocToolsErrorCode, type TypeErrorCode, type RangeErrorCode,
} from "./errors.ts";
export { MemoryBlock, MemoryBlockAllocator, type BlockOptions, type HugePages } from "./memory/block.ts";
export { Access, DEFAULT_ACCESS, type ProviderHandle, type ProvidedBlock, type RegionProvider, type Registration } from "./memory/provider.ts";
export { MemoryRegionTraits } from "./memory/traits.ts";
export { HostProvider, type HostProviderHandle, type HostProviderOptions } from "./host/host-provider.ts";
export {
  LibfabricProvider, SUPPORTED_MR_MODE, type LibfabricProviderHandle, type LibfabricProviderOptions, type LibfabricInfo, type EndpointType, type Threading,
} from "./libfabric/libfabric-provider.ts";
export {
  openProvider, openProviderDescribed, type OpenProviderOptions, type OpenedProvider, type OpenedRegionProvider, type LibfabricProviderName,
} from "./open-provider.ts";
export { MemoryRegion, RegionFlag, RegionFlags, type RegionOwner } from "./memory/region.ts";
export { UcxProvider, type UcxProviderOptions, type UcxInfo, type UcxProviderHandle } from "./ucx/ucx-provider.ts";
export { UcxEndpoint, type UcxEndpointOptions, type UcxEndpointStats, type UcxPeer } from "./ucx/ucx-endpoint.ts";
export { UcxError, ucxStatus } from "../ffi/ucx.ts";
export { MemoryRegionPointer } from "./memory/pointer.ts";
export type { UserMemoryInput } from "./memory/user-memory.ts";
export { RemoteRegion, RemoteRegionFormatError, type RemoteRegionJSON } from "./engine/remote-region.ts";
export { Endpoint, type EndpointOptions, type EndpointStats, type PeerAddress, type LocalMemory } from "./libfabric/endpoint.ts";
export type { RmaEndpoint, RmaEndpointStats } from "./engine/rma-endpoint.ts";
export type { AnyEndpoint, EndpointEngine } from "./engine/endpoint-engine.ts";
export type { AnyLocalMemory } from "./engine/operation-engine.ts";
export type { LatencySummary } from "./engine/latency-histogram.ts";
export { ANY_SOURCE, ANY_TAG, Message, Received, type ReceiveOptions } from "./engine/message.ts";
export type { EngineOptions } from "./engine/engine-options.ts";
export { RmaError, RmaTimeoutError, type RmaKind, type OperationKind, type RmaOperation } from "./engine/rma-errors.ts";
export { MemoryPoolStack, SIZE_CLASSES, type SizeClass, type StackStats } from "./pool/stack.ts";
export { DEFAULT_STACKS, type MemoryPoolOptions, type MemoryPoolStackOptions } from "./pool/pool-options.ts";
export {
  MemoryPool, type PoolStats, type LeakReport, type LeakedRegion,
  type ShareOptions, type SharedPoolHandle,
} from "./pool/pool.ts";
export type { SharedAudit } from "./sharing/shared-pool-state.ts";
export { RegistrationCache, type RegistrationCacheOptions, type RegistrationCacheStats, type PinnedBudget } from "./cache/registration-cache.ts";
export { MemoryRegionAllocator, type ElementType, type AnyTypedArray } from "./memory/allocator.ts";
export type { Progressable } from "./engine/progress.ts";
export type { SharedLayoutSpec, SharedStackLayout } from "./sharing/shared-pool-state.ts";
export { libfabricStatus } from "../ffi/libfabric.ts";
export type { LibraryStatus, LibraryAvailable, LibraryUnavailable } from "../ffi/library-status.ts";
export type { UcxStatus } from "../ffi/ucx.ts";
export { FI, MR_MODE_NAMES } from "../ffi/layout.ts";
export { MpiProvider } from "./mpi/mpi-provider.ts";
export { MpiEndpoint, type MpiEndpointOptions, type MpiRank } from "./mpi/mpi-endpoint.ts";
export { MpiJob } from "./mpi/mpi-job.ts";
export { MpiError, mpiStatus, type ThreadLevelName } from "../ffi/mpi.ts";
export { Job, type JobOptions, type JobVia, type NamedEndpoint } from "./job/job.ts";
export { PmixError, pmixStatus } from "../ffi/pmix.ts";
