import Foundation
import LabAPI
import NIOCore
import NIOPosix

/// One client connection: splits its bytes into lines and answers them one at a time, in order.
/// The socket is read (autoRead is off) only when no request is being answered, no complete line is
/// waiting and the replies are being taken, so a connection holds at most one line and one reply.
final class RPCConnection: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let dispatcher: RPCDispatcher
    private let readers: NIOThreadPool
    private let maximumLineBytes: Int
    private let freedMemory: FreedMemory

    private var buffer = ByteBuffer()
    /// Bytes at the front of `buffer` already known to hold no newline.
    private var scanned = 0
    private var answering = false
    private var inputClosed = false
    private var finished = false
    private var lastWrite: EventLoopFuture<Void>?
    /// The connecting process's user, from the socket's peer credentials.
    private var caller = RPCCaller(user: "unknown", uid: UInt32.max)

    init(dispatcher: RPCDispatcher, readers: NIOThreadPool, maximumLineBytes: Int, freedMemory: FreedMemory) {
        self.dispatcher = dispatcher; self.readers = readers; self.maximumLineBytes = maximumLineBytes
        self.freedMemory = freedMemory
    }

    func channelActive(context: ChannelHandlerContext) {
        context.fireChannelActive()
        // SO_PEERCRED: the kernel's word for who is at the other end. On the event loop the answer
        // is there at once, before the first request is read.
        struct Credentials: Sendable { var pid: Int32; var uid: UInt32; var gid: UInt32 }   // struct ucred's layout
        guard let provider = context.channel as? any SocketOptionProvider else { return next(context) }
        let asked: EventLoopFuture<Credentials> = provider.unsafeGetSocketOption(level: SocketOptionLevel(SOL_SOCKET),
                                                                                 name: SocketOptionName(SO_PEERCRED))
        asked.assumeIsolated().whenComplete { result in
            if case .success(let credentials) = result {
                let name = getpwuid(credentials.uid).flatMap { $0.pointee.pw_name.map { String(cString: $0) } }
                self.caller = RPCCaller(user: name ?? "uid \(credentials.uid)", uid: credentials.uid)
            }
            self.next(context)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        guard !finished else { return }
        buffer.writeBuffer(&bytes)
        next(context)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .inputClosed? = event as? ChannelEvent {
            inputClosed = true  // the client sent all it will: answer what is pending, then close
            next(context)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        next(context)
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        // The client has gone: drop what it queued, and give the memory back now.
        finish(context)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        finish(context)
        context.close(promise: nil)
    }

    /// Answers the next complete line, or reads more, or closes: whichever the connection is ready for.
    private func next(_ context: ChannelHandlerContext) {
        guard !finished, !answering, context.channel.isWritable else { return }
        switch nextLine() {
        case .line(let line):
            answer(line, context)
        case .tooLong:
            let refusal = RPCDispatcher.reply(.null, error: .invalidRequest(
                "request line longer than \(maximumLineBytes) bytes; the connection is closed"))
            write(refusal, context)
            close(context)
        case .incomplete where inputClosed:
            if buffer.readableBytes > 0 {  // a last line without its newline is still a request
                let rest = buffer.readSlice(length: buffer.readableBytes)!
                scanned = 0
                answer(rest, context)
            } else {
                close(context)
            }
        case .incomplete:
            if buffer.readableBytes == 0 && buffer.capacity > 64 << 10 {
                release(context)  // a large line is done: free its storage
            } else {
                buffer.discardReadBytes()
            }
            context.read()
        }
    }

    private enum NextLine { case line(ByteBuffer), tooLong, incomplete }

    private func nextLine() -> NextLine {
        while true {
            let view = buffer.readableBytesView
            let searchEnd = view.startIndex + min(view.count, maximumLineBytes + 1)
            guard let newline = view[(view.startIndex + scanned)..<searchEnd].firstIndex(of: UInt8(ascii: "\n")) else {
                scanned = searchEnd - view.startIndex
                return view.count > maximumLineBytes ? .tooLong : .incomplete
            }
            let line = buffer.readSlice(length: newline - view.startIndex)!
            buffer.moveReaderIndex(forwardBy: 1)
            scanned = 0
            // Blank lines (keep-alives, a stray \r\n) are not requests.
            if line.readableBytesView.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\r") || $0 == UInt8(ascii: "\t") }) {
                continue
            }
            return .line(line)
        }
    }

    private func answer(_ line: ByteBuffer, _ context: ChannelHandlerContext) {
        answering = true
        let request = Data(line.readableBytesView)
        let dispatcher = dispatcher, caller = caller
        readers.runIfActive(eventLoop: context.eventLoop) { dispatcher.respond(to: request, caller: caller) }
            .assumeIsolated()
            .whenComplete { result in
                self.answering = false
                guard !self.finished else { return }
                switch result {
                case .success(let reply?): self.write(reply, context)
                case .success(nil): break  // a notification
                case .failure: self.close(context); return  // the server is stopping
                }
                self.next(context)
            }
    }

    private func write(_ reply: Data, _ context: ChannelHandlerContext) {
        var out = context.channel.allocator.buffer(capacity: reply.count + 1)
        out.writeBytes(reply)
        out.writeInteger(UInt8(ascii: "\n"))
        // Known before writing: the flush can fire writability changes back into this handler, and
        // a close from there must wait for this write instead of dropping what is not yet sent.
        let written = context.eventLoop.makePromise(of: Void.self)
        lastWrite = written.futureResult
        context.writeAndFlush(wrapOutboundOut(out), promise: written)
    }

    /// Closes once the replies already written have gone out.
    private func close(_ context: ChannelHandlerContext) {
        finish(context)
        let channel = context.channel
        if let lastWrite {
            lastWrite.whenComplete { _ in channel.close(promise: nil) }
        } else {
            channel.close(promise: nil)
        }
    }

    private func finish(_ context: ChannelHandlerContext) {
        finished = true
        release(context)
    }

    private func release(_ context: ChannelHandlerContext) {
        let capacity = buffer.capacity
        buffer = ByteBuffer()
        scanned = 0
        freedMemory.released(capacity, on: context.eventLoop)
    }
}
