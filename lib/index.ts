/**
 * alloctools: registered (pinned, keyed) memory for RDMA/DMA, on Bun. Start with
 * {@link openProvider} and {@link MemoryPool}; see the README for the tour.
 * @packageDocumentation
 */
export {
  AllocToolsError, SystemError, FabricError, LibraryLoadError, AllocToolsTypeError, AllocToolsRangeError,
  type AllocToolsErrorCode, type TypeErrorCode, type RangeErrorCode,
} from "./errors.ts";
export { MemoryBlock, MemoryBlockAllocator, type BlockOptions, type HugePages } from "./block.ts";
export { Access, DEFAULT_ACCESS, type ProviderHandle, type ProvidedBlock, type RegionProvider, type Registration } from "./provider.ts";
export { MemoryRegionTraits } from "./traits.ts";
export { HostProvider, type HostProviderHandle, type HostProviderOptions } from "./host-provider.ts";
export {
  LibfabricProvider, SUPPORTED_MR_MODE, type LibfabricProviderHandle, type LibfabricProviderOptions, type LibfabricInfo, type EndpointType, type Threading,
} from "./libfabric-provider.ts";
export {
  openProvider, openProviderDescribed, type OpenProviderOptions, type OpenedProvider, type OpenedRegionProvider, type LibfabricProviderName,
} from "./open-provider.ts";
export { MemoryRegion, RegionFlag, RegionFlags, type RegionOwner } from "./region.ts";
export { UcxProvider, type UcxProviderOptions, type UcxInfo, type UcxProviderHandle } from "./ucx-provider.ts";
export { UcxEndpoint, type UcxEndpointOptions, type UcxEndpointStats, type UcxPeer } from "./ucx-endpoint.ts";
export { UcxError, ucxStatus } from "../ffi/ucx.ts";
export { MemoryRegionPointer } from "./pointer.ts";
export type { UserMemoryInput } from "./user-memory.ts";
export { RemoteRegion, RemoteRegionFormatError, type RemoteRegionJSON } from "./remote-region.ts";
export { Endpoint, type EndpointOptions, type EndpointStats, type PeerAddress, type LocalMemory } from "./endpoint.ts";
export type { RmaEndpoint, RmaEndpointStats } from "./rma-endpoint.ts";
export { RmaError, RmaTimeoutError, type RmaKind, type RmaOperation } from "./rma-errors.ts";
export { MemoryPoolStack, SIZE_CLASSES, type SizeClass, type StackStats } from "./stack.ts";
export { DEFAULT_STACKS, type MemoryPoolOptions, type MemoryPoolStackOptions } from "./pool-options.ts";
export {
  MemoryPool, type PoolStats, type LeakReport, type LeakedRegion,
  type ShareOptions, type SharedPoolHandle,
} from "./pool.ts";
export type { SharedAudit } from "./shared-pool-state.ts";
export { RegistrationCache, type RegistrationCacheOptions, type RegistrationCacheStats } from "./registration-cache.ts";
export { MemoryRegionAllocator, type ElementType, type AnyTypedArray } from "./allocator.ts";
export type { Progressable } from "./progress.ts";
export type { SharedLayoutSpec, SharedStackLayout } from "./shared-pool-state.ts";
export { libfabricStatus } from "../ffi/libfabric.ts";
export type { LibraryStatus, LibraryAvailable, LibraryUnavailable } from "../ffi/library-status.ts";
export type { UcxStatus } from "../ffi/ucx.ts";
export { FI, MR_MODE_NAMES } from "../ffi/layout.ts";
export { MpiProvider } from "./mpi-provider.ts";
export { MpiEndpoint, type MpiEndpointOptions, type MpiRank } from "./mpi-endpoint.ts";
export { MpiJob } from "./mpi-job.ts";
export { MpiError, mpiStatus, type ThreadLevelName } from "../ffi/mpi.ts";
