import Foundation
public import LabCore
import NIOCore
import NIOPosix

/// Serves the JSON-RPC API on a Unix domain socket, one request per line. The socket file is
/// created owner-only (0600): on one machine, file permissions are the authentication.
public final class SocketServer: Sendable {
    public let path: String
    private let group: MultiThreadedEventLoopGroup
    private let channel: any Channel

    /// Lines longer than this are refused and the connection closed.
    static let maximumLineBytes = 1 << 20

    public init(path: String, dispatcher: RPCDispatcher) throws {
        self.path = path
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let bootstrap = ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LineDecoder()))
                    try channel.pipeline.syncOperations.addHandler(RPCHandler(dispatcher: dispatcher))
                }
            }
        do {
            channel = try bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true).wait()
            chmod(path, 0o600)
        } catch {
            try? group.syncShutdownGracefully()
            throw LabError(.transport, "cannot listen on \(path)", cause: error)
        }
    }

    public func stop() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
        unlink(path)
    }
}

/// Splits the byte stream into lines; refuses a line that never ends.
struct LineDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let newline = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) else {
            if buffer.readableBytes > SocketServer.maximumLineBytes { throw LabError(.protocolViolation, "request line too long") }
            return .needMoreData
        }
        let line = buffer.readSlice(length: newline - buffer.readerIndex)!
        buffer.moveReaderIndex(forwardBy: 1)
        context.fireChannelRead(wrapInboundOut(line))
        return .continue
    }
}

final class RPCHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let dispatcher: RPCDispatcher

    init(dispatcher: RPCDispatcher) { self.dispatcher = dispatcher }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let line = Data(unwrapInboundIn(data).readableBytesView)
        guard !line.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\r") }) else { return }
        // Database reads block; answer off the event loop, then write back on it.
        let loop = context.eventLoop
        let bound = NIOLoopBound(context, eventLoop: loop)
        let dispatcher = dispatcher
        loop.makeFutureWithTask { dispatcher.respond(to: line) }.whenSuccess { reply in
            var buffer = bound.value.channel.allocator.buffer(capacity: reply.count + 1)
            buffer.writeBytes(reply)
            buffer.writeInteger(UInt8(ascii: "\n"))
            bound.value.writeAndFlush(NIOAny(buffer), promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
